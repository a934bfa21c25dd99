"""Up-front check of a request's `messages`, before anything is resolved, reserved or sent.

Without it a mistake of the caller (`None`, a bare string, a message without content) reaches
litellm inside a model attempt and comes back as that model's failure, after a call was made and
a circuit counted it. The rules are OpenAI's chat API's, no stricter (litellm and the providers
check the rest): a non-empty list of messages, each a mapping or a message object (litellm's
`Message`, OpenAI's types) with a string `role`; `content` a string or a list of content parts,
required except on an assistant message that carries `tool_calls`/`function_call`/`audio`/
`refusal` and on a legacy `function` message; a `tool` message also needs its `tool_call_id`.

A tight loop over plain lookups: it runs on every request, so no pydantic here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidMessagesError

__all__ = ["check_messages"]

_MISSING: Any = object()
# what lets an assistant message leave `content` out (OpenAI: "required unless tool_calls or
# function_call is specified"; a replayed audio answer or refusal has no text either)
_ASSISTANT_WITHOUT_CONTENT = ("tool_calls", "function_call", "audio", "refusal")


def _get(message: Any, key: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(key, _MISSING)
    return getattr(message, key, _MISSING)


def check_messages(messages: object) -> None:
    """Raise `InvalidMessagesError` naming the first offending field, else return None."""
    if not isinstance(messages, list | tuple):
        raise InvalidMessagesError(
            "messages", f"must be a list of chat messages, got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidMessagesError("messages", "must hold at least one message")
    for index, message in enumerate(messages):
        if isinstance(message, Mapping):
            role = message.get("role", _MISSING)
            content = message.get("content", _MISSING)
        elif isinstance(message, str | bytes | int | float | list | tuple) or message is None:
            raise InvalidMessagesError(
                f"messages[{index}]",
                f"must be a message (a dict with 'role' and 'content'), got {type(message).__name__}",
                index,
            )
        else:  # a message object: litellm's Message, OpenAI's ChatCompletionMessage, ...
            role = getattr(message, "role", _MISSING)
            content = getattr(message, "content", _MISSING)
        if role is _MISSING or role is None:
            raise InvalidMessagesError(f"messages[{index}].role", "is required", index)
        if not isinstance(role, str) or not role:
            raise InvalidMessagesError(
                f"messages[{index}].role", f"must be a non-empty string, got {role!r:.40}", index
            )
        if isinstance(content, str | list):
            pass
        elif content is _MISSING or content is None:
            if role == "assistant":
                if not any(_get(message, key) not in (_MISSING, None) for key in _ASSISTANT_WITHOUT_CONTENT):
                    raise InvalidMessagesError(
                        f"messages[{index}].content",
                        "is required for an assistant message without tool_calls or function_call",
                        index,
                    )
            elif role != "function":
                raise InvalidMessagesError(
                    f"messages[{index}].content", f"is required for a {role!r} message", index
                )
        else:
            raise InvalidMessagesError(
                f"messages[{index}].content",
                f"must be a string or a list of content parts, got {type(content).__name__}",
                index,
            )
        if role == "tool" and _get(message, "tool_call_id") in (_MISSING, None):
            raise InvalidMessagesError(
                f"messages[{index}].tool_call_id", "is required for a 'tool' message", index
            )
