"""The vocabulary that serving (``app``) and training (``training``) share, kept in one place.

- :mod:`app.core.messages`: the one message type, from request to store to prompt, and the session-id rule;
- :mod:`app.core.strategies`: the support-strategy catalogue (ESConv's eight by default, YAML-extensible);
- :mod:`app.core.format`: the SweetieChat conversation format (strategy tag; dialogue -> chat messages);
- :mod:`app.core.manifest`: the ``model_repo/<name>/model.yaml`` schema;
- :mod:`app.core.template`: chat-template helpers (token ids straight from ``apply_chat_template``).

Modules here import only the standard library, PyYAML and pydantic, and nothing else from ``app``; ``training``
imports them, ``app`` never imports ``training`` (an import-linter contract in pyproject.toml keeps it so).
"""
