"""``ragfleet search``: ask a knowledge base."""

from __future__ import annotations

import json
import sys
import textwrap

import click

from ..ingest.errors import TokenizerUnavailable
from .env import EXIT_NOT_FOUND, Env, operator_command
from .output import JSON_OPTION
from .usage import EXIT_USAGE


@click.command()
@click.argument("query")
@click.option("--kb", "kb_name", required=True, metavar="NAME", help="Knowledge base to search.")
@click.option("--top", "-k", "top_k", type=click.IntRange(1, 100), default=5, show_default=True)
@JSON_OPTION
@operator_command
def search(env: Env, query: str, kb_name: str, top_k: int, as_json: bool) -> None:
    """Search a knowledge base: BM25, and hybrid when its chunks have vectors.

    Exit 4 if the knowledge base does not exist.
    """
    from ..ingest.search import search_kb

    try:
        hits = search_kb(env.settings, env.store, kb_name, query, top_k)
    except LookupError as exc:
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except TokenizerUnavailable as exc:  # queries are tokenized as RAGFlow does
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps([h.__dict__ for h in hits], indent=2, default=list))
        return
    if not hits:
        click.echo("(no match)")
    for rank, hit in enumerate(hits, 1):
        pages = f" p.{','.join(map(str, hit.pages))}" if hit.pages else ""
        click.echo(f"{rank}. {hit.doc_name}{pages}  (score {hit.score:.3f})")
        click.echo(textwrap.indent(textwrap.shorten(hit.content, 300), "   "))
