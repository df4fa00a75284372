"""The ``avsent`` command line (rich-click). Plugins add commands via ``register_commands``."""

from __future__ import annotations

import os

from avsent.training.threads import passive_waits

os.environ.update(passive_waits(os.environ))  # before torch loads OpenMP, which reads it once

import json
import sys
from typing import Any

import attrs
import rich_click as click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from avsent import __version__
from avsent.config import Choice, dump_toml, parse_override, to_dict
from avsent.errors import AvsentError
from avsent.registry import KINDS, get_registry

console = Console()
err_console = Console(stderr=True)

click.rich_click.TEXT_MARKUP = "markdown"


def overrides_option(func: Any) -> Any:
    """``--set a.b=value`` (repeatable): override any config field by its dotted name."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="FIELD=VALUE",
        help="Override a config field, e.g. `--set video.growth_rate=16` (repeatable).",
    )(func)


def parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    return dict(parse_override(item) for item in items)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="avsent")
def cli() -> None:
    """**avsent**: audio-visual sentiment analysis built from plugins.

    Start with `avsent train mavsa-di` (built-in synthetic data), then
    `avsent components` to see every part you can swap.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Installed plugins: version, hooks, components and load errors."""
    registry = get_registry()
    rows = [
        {
            "name": info.name,
            "version": info.version,
            "hooks": info.hooks,
            "components": registry.components_of(info.name),
            "error": info.error,
        }
        for info in sorted(registry.plugins.values(), key=lambda i: i.name)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "version", "components", "status")
    for row in rows:
        comps = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["components"].items())
        status = (
            f"[red]failed: {escape(row['error'])}[/red]" if row["error"] else "[green]ok[/green]"
        )
        table.add_row(escape(row["name"]), escape(row["version"] or "-"), escape(comps or "-"),
                      status)  # fmt: skip
    console.print(table)


@cli.command()
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--pattern", default="*", help="Glob on component names.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def components(kind: str | None, pattern: str, as_json: bool) -> None:
    """Registered components, by kind."""
    comps = get_registry().list(kind, pattern)
    rows = [
        {
            "kind": c.kind,
            "name": c.name,
            "plugin": c.plugin,
            "config": c.config.__name__ if c.config else None,
            "description": c.description or getattr(c.obj, "description", "") or "",
        }
        for c in comps
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("kind", "name", "plugin", "description")
    for row in rows:
        table.add_row(*(escape(row[k]) for k in ("kind", "name", "plugin", "description")))
    console.print(table)


@cli.group()
def config() -> None:
    """Run configs: show a recipe's full default config."""


@config.command("show")
@click.argument("recipe")
@overrides_option
def config_show(recipe: str, overrides: tuple[str, ...]) -> None:
    """Print RECIPE's full config as TOML, ready to save, edit and pass to `--config`."""
    from avsent.run_config import default_run_config

    cfg = default_run_config(recipe, parse_overrides(overrides))
    click.echo(with_unset_fields(dump_toml(to_dict(cfg)), unset_fields(cfg)), nl=False)


def unset_fields(obj: Any, table: str = "") -> dict[str, list[str]]:
    """TOML table → the fields of ``obj`` left at ``None`` there (TOML has no null, so
    ``to_dict`` drops them and a user would not know they exist)."""
    found: dict[str, list[str]] = {}
    if isinstance(obj, Choice):  # a slot's table holds its component's fields
        return unset_fields(obj.config, table) if obj.config is not None else found
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if value is None:
            found.setdefault(table, []).append(field.name)
        elif isinstance(value, Choice) or attrs.has(type(value)):
            inner = f"{table}.{field.name}" if table else field.name
            for name, fields in unset_fields(value, inner).items():
                found.setdefault(name, []).extend(fields)
    return found


def with_unset_fields(text: str, unset: dict[str, list[str]]) -> str:
    """``text`` (TOML) with ``# field = (unset)`` at the end of each table's lines."""

    def comments(table: str) -> list[str]:
        return [f"# {name} = (unset)" for name in unset.pop(table, [])]

    out: list[str] = []
    table = ""
    for line in text.splitlines():
        header = line.startswith("[") and line.endswith("]") and not line.startswith("[[")
        if header:
            while out and not out[-1]:  # before the blank line that ends the table
                out.pop()
            out += [*comments(table), ""]
            table = line[1:-1]
        out.append(line)
    out += comments(table)
    for name in list(unset):  # tables that hold nothing but unset fields
        out += ["", f"[{name}]", *comments(name)]
    return "\n".join(out).lstrip("\n") + "\n"


@cli.command()
@click.argument("recipes", nargs=-1)
@overrides_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def describe(recipes: tuple[str, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Parameter counts of recipes' models (all recipes when none is named), after `--set`.

    Listing all recipes, one whose pretrained weights are not on this machine gets a row
    saying so instead of stopping the listing; a recipe named explicitly raises the error.
    """
    from avsent.errors import WeightsUnavailableError
    from avsent.labels import EMOTIONS
    from avsent.model import build_model, count_parameters, inputs_for
    from avsent.run_config import default_run_config

    names = recipes or tuple(c.name for c in get_registry().list("recipe"))
    changes = parse_overrides(overrides)
    rows = []
    for name in names:
        config = default_run_config(name, changes)
        try:
            model = build_model(config, inputs_for(config), EMOTIONS)
        except WeightsUnavailableError as exc:
            if recipes:
                raise
            rows.append({"recipe": name, "parameters": None, "unavailable": str(exc)})
            continue
        parts = {
            part: count_parameters(module)
            for part, module in model.named_children()
            if count_parameters(module) > 0
        }
        rows.append({"recipe": name, "parameters": count_parameters(model), "parts": parts})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("recipe", "parameters", "by part")
    for row in rows:
        if row["parameters"] is None:
            reason = row["unavailable"].split(". ")[0]
            table.add_row(escape(row["recipe"]), "?", escape(f"weights not here: {reason}"))
            continue
        by_part = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in row["parts"].items())
        table.add_row(escape(row["recipe"]), f"{row['parameters'] / 1e6:.2f}M", by_part)
    console.print(table)


def _add_plugin_commands() -> None:
    for comp in get_registry().list("command"):
        if comp.name not in cli.commands:
            cli.add_command(comp.obj)


def main(argv: list[str] | None = None) -> None:
    """Entry point: plugin commands added, avsent errors shown as one clear line."""
    try:
        _add_plugin_commands()
        code = cli.main(args=argv, prog_name="avsent", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AvsentError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        sys.exit(2)


# Built-in commands live in avsent.commands (they use the helpers above).
from avsent.commands import register_builtin_commands  # noqa: E402

register_builtin_commands(cli)
