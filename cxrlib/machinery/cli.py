"""`cxr`: execute chapters with papermill in dependency order, skip unchanged ones, build the book.

    cxr run [CHAPTER ...] [--profile P] [--data PATH] [-p name=value ...] [--force] [-j N] [--tuner-workers N]
    cxr run --from-page book/chapters/CHAPTER.ipynb [--force]
    cxr compare RUNS_A RUNS_B [--wide]
    cxr book
    cxr list [CHAPTER]
    cxr cells
    cxr clean
    cxr predict PATH ... --model CHAPTER/MODEL [--profile P] [-o CSV] [--gradcam DIR]
    cxr browse [--profile P] [--port N] [--token T] [--lab] [--open]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from cxrlib.core.config import REPO_ROOT, notebooks_dir, runs_dir
from cxrlib.core.files import write_atomic
from cxrlib.core.manifest import CHAPTERS, PARAMETERS, PROFILES, RunnerError, needed, parameter_names, parameters_cell
from cxrlib.machinery import browse, predict, runs
from cxrlib.machinery.runner import Interrupted, rerun_from_page, run_chapters
from cxrlib.machinery.site import build_book


def parse_assignments(pairs) -> dict:
    """-p name=value pairs; values are read as YAML so numbers, booleans and lists keep their type."""
    params = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise RunnerError(f"parameter {pair!r} is not of the form name=value")
        params[name.strip()] = parse_value(value)
    return params


def parse_value(text: str):
    """YAML, plus the float forms YAML 1.1 reads as strings (1e-4)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def listing(chapter: str | None = None) -> str:
    """`cxr list`: the chapters and what each reads; `cxr list CHAPTER`: its parameters, each with its help, what
    it allows (a JSON schema) and its default per profile."""
    if chapter is None:
        width = max(map(len, CHAPTERS))
        return "\n".join(["Chapters, in the book's order (cxr list CHAPTER shows its parameters):", *(
            f"  {name:<{width}}  reads {', '.join(reads) or 'nothing'}" for name, reads in CHAPTERS.items())])
    needed([chapter])
    lines = [f"Parameters of {chapter} (cxr run {chapter} -p name=value):"]
    for name in parameter_names(chapter):
        defaults = ", ".join(f"{profile} {settings[name]!r}" for profile, settings in PROFILES.items())
        schema = PARAMETERS[name].schema
        lines += [f"{name}: {PARAMETERS[name].help}", f"    allowed: {schema.get('description') or json.dumps(schema)}",
                  f"    default: {defaults}"]
    return "\n".join(lines)


def write_parameter_cells(folder) -> list:
    """Rewrite the parameters cell of every chapter notebook in folder from the manifest; the notebooks changed."""
    changed = []
    for chapter in CHAPTERS:
        path = Path(folder) / f"{chapter}.ipynb"
        notebook = json.loads(path.read_text())
        cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        source = parameters_cell(chapter).splitlines(keepends=True)
        if cell["source"] != source:
            cell["source"] = source
            text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
            write_atomic(path, lambda tmp: Path(tmp).write_text(text))
            changed.append(path.name)
    return changed


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(CHAPTERS)})")
    run.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help=", ".join(PROFILES))
    run.add_argument("--data", default=os.environ.get("CXR_DATA_DIR"),
                     help="an NIH ChestX-ray14 folder, or 'synthetic' (default: the real sample shipped in data/)")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a notebook parameter")
    run.add_argument("--force", action="store_true", help="run even when nothing changed")
    run.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                     help="run up to N independent chapters at once, each on a GPU of its own where there are several")
    run.add_argument("--only", action="store_true", help=argparse.SUPPRESS)  # a -j child: this chapter alone
    run.add_argument("--book-root", default=str(REPO_ROOT), help=argparse.SUPPRESS)
    run.add_argument("--tuner-workers", type=int, metavar="N",
                     help=f"{PARAMETERS['tuner_workers'].help} (the parameter tuner_workers)")
    run.add_argument("--from-page", metavar="PATH", help="re-run the chapter of an executed page with its recorded "
                     "parameters (book/chapters/<chapter>.ipynb); no chapter names or -p with it")
    compare = sub.add_parser("compare", help="metrics of two run folders side by side, and the largest difference")
    compare.add_argument("runs_a", metavar="RUNS_A", help="a run folder: runs/ or runs/<profile>")
    compare.add_argument("runs_b", metavar="RUNS_B", help="the other run folder")
    compare.add_argument("--wide", action="store_true", help="every metric of both folders side by side")
    sub.add_parser("book", help="build the HTML book into _build/html")
    sub.add_parser("list", help="list the chapters, or one chapter's parameters").add_argument("chapter", nargs="?")
    sub.add_parser("cells", help="rewrite every notebook's parameters cell from the manifest (make cells)")
    sub.add_parser("clean", help="delete the results kept for other parameters (runs/<profile>/.kept)")
    predict.add_parser(sub)
    browsing = sub.add_parser("browse", help="browse a profile's misclassified images in Voila (prints the address)")
    browsing.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help=", ".join(PROFILES))
    browsing.add_argument("--port", type=int, default=0, help="default: a free port")
    browsing.add_argument("--ip", default="127.0.0.1", help="the address to listen on")
    browsing.add_argument("--token", help="default: a random token (it is part of the address printed)")
    browsing.add_argument("--lab", action="store_true", help="JupyterLab on the notebooks instead of Voila's read-only view")
    browsing.add_argument("--open", action="store_true", help="also open the address in a web browser")
    args = parser.parse_args(argv)
    try:
        if args.command == "run" and args.from_page:
            if args.chapters or args.param:
                raise RunnerError(f"--from-page re-runs {args.from_page} with its own parameters; "
                                  f"drop the chapter names {args.chapters} and -p {args.param}")
            rerun_from_page(args.from_page, args.force)
        elif args.command == "run":
            params = parse_assignments(args.param)
            if args.tuner_workers is not None:
                params["tuner_workers"] = args.tuner_workers
            run_chapters(args.chapters, args.profile, args.data, params, args.force, Path(args.book_root),
                         jobs=args.jobs, only=args.only)
        elif args.command == "compare":
            from cxrlib.machinery.compare import compare_text

            print(compare_text(args.runs_a, args.runs_b, args.wide))
        elif args.command == "book":
            build_book()
        elif args.command == "clean":
            gone = [kept for profile in runs_dir().glob("*/") for kept in runs.trim_kept(profile, budget=-1)]
            print(f"deleted {len(gone)} kept result folder(s); the results in place and the pages stay")
        elif args.command == "predict":
            return predict.main(args)
        elif args.command == "browse":
            return browse.serve(args.profile, args.port, args.token, args.ip, args.lab, args.open)
        elif args.command == "cells":
            print("parameters cells rewritten:", ", ".join(write_parameter_cells(notebooks_dir())) or "none")
        else:
            print(listing(args.chapter))
    except Interrupted as err:
        print(f"cxr: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("cxr: interrupted before any chapter ran; nothing was changed", file=sys.stderr)
        return 130
    except (RunnerError, ValueError, FileNotFoundError) as err:
        print(f"cxr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
