"""`--help` in the plain style of man pages: `FILE...`, `--model MODEL`.

Typer writes required arguments as `{files}...` and appends Python types (`<list[str]>`,
`<str>`) to every argument and option, which tells a user nothing about what to type. This
command class lays out the same records with metavars: an argument's own (FILE, DIR), or an
option's name in capitals.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand

__all__ = ["PlainHelpCommand", "PlainHelpTyper"]


def _argument_name(param: TyperArgument) -> str:
    name = param.metavar or param.name.upper()
    return name + ("..." if param.nargs != 1 and not name.endswith("...") else "")


class PlainHelpCommand(TyperCommand):
    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        params = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        arguments = [(_argument_name(p), p.help or "") for p in params if isinstance(p, TyperArgument)]
        options = []
        for param in params:
            record = None if isinstance(param, TyperArgument) else param.get_help_record(ctx)
            if record is None:
                continue
            names = ", ".join(sorted(param.opts, key=len))
            names += "".join(f" / {o}" for o in param.secondary_opts)
            if not param.is_flag:
                names += f" {param.metavar or param.name.upper()}"
            options.append((names, record[1]))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class PlainHelpTyper(typer.Typer):
    """A Typer app whose commands all use PlainHelpCommand."""

    def command(self, *args, cls: type[TyperCommand] = PlainHelpCommand, **kwargs):
        return super().command(*args, cls=cls, **kwargs)
