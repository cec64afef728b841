"""Fuzz the params loader: every key of every section gets values of the wrong kind; each
is accepted or refused with one line naming the key, never another exception."""

import pytest

from unlearn.config import Params, parse_params
from unlearn.errors import ConfigError

BAD_VALUES = ("x", -1, 0, 1.5, -0.5, 10**9, True, None, [], [1, 1], {}, {"a": 1})


def leaf_keys(value, prefix=()):
    """Every key path of the default params, e.g. ("unlearn", "amun", "lr")."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaf_keys(sub, (*prefix, key))
    else:
        yield prefix


def nested(path, value):
    out = value
    for key in reversed(path):
        out = {key: out}
    return out


DEFAULTS = Params().model_dump()
CASES = [(path, bad) for path in leaf_keys(DEFAULTS) for bad in BAD_VALUES]


def test_every_wrong_value_is_accepted_or_refused_in_one_line():
    refused = 0
    for path, bad in CASES:
        try:
            parse_params(nested(path, bad))
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith("params.yaml: "), (path, bad, message)
            assert path[0] in message, (path, bad, message)
            refused += 1
    assert len(CASES) > 1000 and refused > 0.7 * len(CASES)


@pytest.mark.parametrize("section", sorted(k for k, v in DEFAULTS.items() if isinstance(v, dict)))
def test_unknown_keys_are_refused_with_a_suggestion(section):
    first = next(iter(DEFAULTS[section]))
    with pytest.raises(ConfigError, match=rf"params.yaml: {section}.{first}x: unknown key; did you mean '{first}'\?"):
        parse_params({section: {f"{first}x": 1}})
