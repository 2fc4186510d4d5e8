"""The response policy: what to do with a :class:`SafetyResult` (leave, frame or replace the reply).

Crisis resources and messages come from ``safety_policy.yaml`` in this package (:data:`DEFAULT_POLICY_PATH`), or
any YAML of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.chat.safety.types import Category, RiskLevel, SafetyResult

PolicyAction = Literal["none", "frame", "replace"]
DEFAULT_POLICY_PATH = Path(__file__).with_name("safety_policy.yaml")


class CrisisResource(BaseModel):
    """One crisis line or service, as shown to the user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Service name as people know it, e.g. '988 Suicide & Crisis Lifeline'.")
    contact: str = Field(
        min_length=1, description="How to reach it, in the locale's language, e.g. 'call or text 988'."
    )
    categories: tuple[Category, ...] = Field(
        default=(), description="Categories it is specific to; empty means it fits every category."
    )


class LocaleResources(BaseModel):
    """Crisis resources for one locale (e.g. en-US) or one language with no region (e.g. en)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emergency: str = Field(
        min_length=1, description="Emergency number phrase, e.g. '911' or 'your local emergency number'."
    )
    resources: tuple[CrisisResource, ...] = Field(min_length=1)


class LevelMessages(BaseModel):
    """Texts for one risk level; ``{resources}`` and ``{emergency}`` are filled in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = ""
    suffix: str = ""
    replacement: str = ""


class LanguageMessages(BaseModel):
    """Human-written messages for one language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    elevated: LevelMessages
    high: LevelMessages
    resource_format: str = "{name} ({contact})"
    resource_separator: str = "; "


LevelName = Literal["elevated", "high"]


def _default_actions() -> dict[LevelName, PolicyAction]:
    return {"elevated": "frame", "high": "replace"}


class SafetyPolicy(BaseModel):
    """What the server does with a :class:`SafetyResult`; load with :meth:`from_yaml` or :meth:`default`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[LevelName, PolicyAction] = Field(
        default_factory=_default_actions,
        description="Per level: none (leave the reply), frame (add prefix/suffix) or replace (send our text only).",
    )
    default_language: str = Field(default="en", description="Message language when the locale's has none.")
    language_default_locales: dict[str, str] = Field(
        default_factory=dict, description="Region-less language -> locale whose resources to use (zh -> zh-CN)."
    )
    max_resources: int = Field(default=2, ge=1, le=5, description="How many resources one message lists.")
    messages: dict[str, LanguageMessages]
    locales: dict[str, LocaleResources]

    @field_validator("locales")
    @classmethod
    def _normalise_locale_keys(cls, value: dict[str, LocaleResources]) -> dict[str, LocaleResources]:
        return {_normalise_locale(k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _check_consistency(self) -> SafetyPolicy:
        """Check that every message template can be filled and the fallbacks exist."""
        if self.default_language not in self.messages:
            raise ValueError(f"default_language {self.default_language!r} has no entry under messages")
        if self.default_language not in self.locales:
            raise ValueError(
                f"locales must contain the region-less default {self.default_language!r} (the international list)"
            )
        for lang, target in self.language_default_locales.items():
            if _normalise_locale(target) not in self.locales:
                raise ValueError(f"language_default_locales[{lang!r}] = {target!r} is not a key of locales")
        for lang, msgs in self.messages.items():
            for level_name in ("elevated", "high"):
                for part, template in getattr(msgs, level_name).model_dump().items():
                    try:
                        template.format(resources="", emergency="")
                    except (KeyError, IndexError, ValueError) as exc:
                        raise ValueError(
                            f"messages.{lang}.{level_name}.{part}: only {{resources}} and {{emergency}} may be used"
                            f" ({exc!r})"
                        ) from exc
            if self.actions.get("high") == "replace" and not msgs.high.replacement:
                raise ValueError(f"actions.high is 'replace' but messages.{lang}.high.replacement is empty")
            if self.actions.get("elevated") == "replace" and not msgs.elevated.replacement:
                raise ValueError(f"actions.elevated is 'replace' but messages.{lang}.elevated.replacement is empty")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> SafetyPolicy:
        """Load a policy file; a bad file raises ``ValueError`` naming the file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read safety policy {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"safety policy {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"safety policy {path} must be a YAML mapping")
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"invalid safety policy {path}: {exc}") from exc

    @classmethod
    def default(cls) -> SafetyPolicy:
        """The shipped policy, ``app/chat/safety/safety_policy.yaml`` (loaded once)."""
        return _load_default_policy()

    def resolve_locale(self, locale: str | None, language: str | None = None) -> tuple[str, str]:
        """(resources locale key, message language) for a requested locale such as "en-GB", "zh_CN" or "zh".

        Order: for a region-less language, ``language_default_locales``; the exact locale; the language alone
        (its international list); ``default_language``. With no locale, ``language`` (detected) is used.
        """
        tag = _normalise_locale(locale or language or self.default_language)
        lang = tag.split("-", 1)[0]
        message_lang = lang if lang in self.messages else self.default_language
        if tag == lang and lang in self.language_default_locales:
            return _normalise_locale(self.language_default_locales[lang]), message_lang
        if tag in self.locales:
            return tag, message_lang
        if lang in self.locales:
            return lang, message_lang
        return self.default_language, message_lang

    def with_high_action(self, action: PolicyAction | None) -> SafetyPolicy:
        """This policy with the high-risk action overridden (a model manifest's ``safety_high_action``)."""
        if action is None or action == self.actions.get("high"):
            return self
        return SafetyPolicy.model_validate({**self.model_dump(), "actions": {**self.actions, "high": action}})

    def decide(self, result: SafetyResult, locale: str | None = None) -> SafetyDecision:
        """How to deliver the reply to a message screened as ``result``: leave it, frame it, or replace it.

        ``locale`` (e.g. "en-GB", "zh-CN", "zh") picks messages and resources; None uses the language the screen
        detected.
        """
        if not result.flagged:
            return SafetyDecision(action="none", level=result.level, categories=result.categories, locale="")
        level_name: Literal["elevated", "high"] = "high" if result.level is RiskLevel.HIGH else "elevated"
        action = self.actions.get(level_name, "frame")
        locale_key, lang = self.resolve_locale(locale, result.language)
        if action == "none":
            return SafetyDecision(action="none", level=result.level, categories=result.categories, locale=locale_key)
        msgs = self.messages[lang]
        texts: LevelMessages = getattr(msgs, level_name)
        where = self.locales[locale_key]
        fill = {"resources": self._resource_text(where, msgs, result.categories), "emergency": where.emergency}
        if action == "replace":
            return SafetyDecision(
                action="replace",
                level=result.level,
                categories=result.categories,
                locale=locale_key,
                replacement=texts.replacement.format(**fill).strip(),
            )
        return SafetyDecision(
            action="frame",
            level=result.level,
            categories=result.categories,
            locale=locale_key,
            prefix=texts.prefix.format(**fill).strip(),
            suffix=texts.suffix.format(**fill).strip(),
        )

    def _resource_text(self, where: LocaleResources, msgs: LanguageMessages, categories: tuple[str, ...]) -> str:
        wanted = set(categories)
        specific = [r for r in where.resources if r.categories and wanted & {c.value for c in r.categories}]
        general = [r for r in where.resources if not r.categories]
        chosen = (specific + general)[: self.max_resources]
        return msgs.resource_separator.join(msgs.resource_format.format(name=r.name, contact=r.contact) for r in chosen)


def _normalise_locale(tag: str) -> str:
    parts = tag.strip().replace("_", "-").split("-")
    if len(parts) == 1:
        return parts[0].lower()
    return f"{parts[0].lower()}-{parts[1].upper()}"


@lru_cache(maxsize=1)
def _load_default_policy() -> SafetyPolicy:
    return SafetyPolicy.from_yaml(DEFAULT_POLICY_PATH)


_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class SafetyDecision:
    """How to deliver one reply.

    The reply the user sees is ``leading`` (sent before the model's first token), the model's text, then
    ``trailing``; when ``replaces_reply``, only ``leading`` (the vetted message) and nothing is generated.
    """

    action: PolicyAction
    level: RiskLevel
    categories: tuple[str, ...]
    locale: str
    """Resources locale actually used ("" when nothing is added)."""
    prefix: str = ""
    suffix: str = ""
    replacement: str | None = None

    @property
    def replaces_reply(self) -> bool:
        """True when the model's reply must not be shown (the server may skip generating it)."""
        return self.action == "replace"

    @property
    def leading(self) -> str:
        """Text to emit before the reply, separator included ("" when there is none)."""
        if self.action == "replace":
            return self.replacement or ""
        return self.prefix + _SEPARATOR if self.prefix else ""

    @property
    def trailing(self) -> str:
        """Text to emit after the reply, separator included ("" when there is none)."""
        if self.action != "frame" or not self.suffix:
            return ""
        return _SEPARATOR + self.suffix

    def to_dict(self) -> dict[str, object]:
        """API extension object: the screen's level and categories plus what was done."""
        return {"level": self.level.value, "categories": list(self.categories), "action": self.action}
