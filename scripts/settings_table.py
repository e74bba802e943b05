"""Print the README's stream-settings table from the option table in tap_rhttp/config/options.py.

    .venv/bin/python scripts/settings_table.py

tests/test_readme.py checks that README.md holds exactly this output, so the table
cannot drift from the code.
"""

from __future__ import annotations

from tap_rhttp.config.options import ALIASES, OPTIONS, REQUIRED


def _default(value: object) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def settings_table() -> str:
    aliases = {real: alias for alias, real in ALIASES.items()}
    rows = [
        "| option | r.http | default | what it does | example |",
        "|---|---|---|---|---|",
    ]
    for name, option in OPTIONS.items():
        label = f"`{name}`" + (f" (alias `{aliases[name]}`)" if name in aliases else "")
        description = option.description + (" Required." if name in REQUIRED else "")
        description = description.replace("|", "\\|")
        example = option.example.replace("|", "\\|")
        rows.append(
            f"| {label} | {'yes' if option.r_http else ''} | {_default(option.default)} "
            f"| {description} | `{{{example}}}` |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
