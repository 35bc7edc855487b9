"""Entry point. Sub-commands are imported only when they run, so ``stair-es --help`` is instant
and never loads torch, onnxruntime or the engine clients."""

from __future__ import annotations

import importlib

import click

from stair_es import __version__

# name -> (module in stair_es_cli, attribute, one-line help shown by --help without importing)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "engine": ("engine_cmd", "engine", "Start, stop and inspect the local OpenSearch/Elasticsearch node."),
    "make-synthetic": ("train_cmd", "make_synthetic", "Generate a seeded synthetic captioned image set."),
    "train": ("train_cmd", "train", "Train a STAIR model (stages 1-3, or dense-to-sparse)."),
    "convert-open-clip": (
        "train_cmd",
        "convert_open_clip",
        "Turn an open_clip checkpoint into a CLIPModel folder.",
    ),
    "export": ("export_cmd", "export", "Export a trained model to ONNX with a manifest and parity report."),
    "encode": ("encode_cmd", "encode", "Encode texts or images to token->weight JSONL."),
    "index": ("index_cmd", "index", "Index image folders/manifests or text corpora into the engine."),
    "alias": (
        "alias_cmd",
        "alias",
        "List aliases, or point one at an index atomically (zero-downtime swaps).",
    ),
    "search": ("search_cmd", "search", "Search with a text or an image query."),
    "explain": ("search_cmd", "explain", "Show the token->weight map of a text or an image."),
    "eval": ("eval_cmd", "eval_cmd", "Recall@K through the engine and in memory, side by side."),
    "doctor": ("doctor_cmd", "doctor", "Check versions, execution provider, engine and model."),
    "demo": ("demo_cmd", "demo", "One command: local engine, demo model, sample images, queries."),
    "serve": ("serve_cmd", "serve", "Search page and JSON API: thumbnails, matched tokens, modes."),
}


class LazyGroup(click.Group):
    """A group whose commands live in modules that are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(f"stair_es_cli.{module}"), attr)

    def invoke(self, ctx: click.Context):
        """Turn library errors into one line on stderr and the error's exit code."""
        from stair_es.engine.config import redact_urls
        from stair_es.errors import StairError

        try:
            return super().invoke(ctx)
        except StairError as exc:
            click.echo(f"error: {redact_urls(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="stair-es")
def main() -> None:
    """STAIR sparse image/text retrieval on Elasticsearch and OpenSearch."""
    from stair_es.process import quiet_bomb_warnings

    quiet_bomb_warnings()  # one line per refused image, not two


def cli() -> None:
    """Console script entry point."""
    main()


if __name__ == "__main__":  # pragma: no cover
    cli()
