"""Seeker messages shared by the Locust users and the side-by-side benchmark (same load for both)."""

from __future__ import annotations

OPENERS = [
    "I lost my job today and I don't know how to tell my family.",
    "I've been feeling really lonely since I moved to a new city.",
    "My best friend stopped talking to me and I don't know why.",
    "I failed an exam I studied really hard for.",
    "I can't sleep because I keep worrying about everything.",
    "My partner and I had a big fight last night.",
    "I feel like nobody at work notices what I do.",
    "My dog died last week and the house feels empty.",
]
FOLLOW_UPS = [
    "Yes, that's exactly how it feels.",
    "I guess I'm mostly scared of what comes next.",
    "I tried talking to someone but it didn't really help.",
    "It's been going on for a few weeks now.",
    "I don't know, maybe I'm overreacting.",
    "That makes sense. What could I do tonight to feel a bit better?",
    "I haven't told anyone else about this.",
    "Thank you, it helps to say it out loud.",
    "Sometimes I think it's all my fault.",
    "I just want things to go back to normal.",
]
