"""The built-in text corpus: the documentation of Python's own standard library, six labelled sources.

Real English that every Python ships, so nothing is downloaded: the docstrings of standard
modules, their public functions and classes and those classes' methods, read with
``__doc__`` (never inherited docs, so a passage belongs to the module it is found in).
Distributions may strip a library's files but not the docstrings compiled into it; only
``python -OO`` removes them, and that is refused in one sentence.  The same Python version
gives the same text on every machine (the module lists are fixed and read in order).

The label of a passage is the area of the library it documents (text, numbers, files,
internet, concurrency, data formats): telling them apart needs the passage's meaning (its
vocabulary and what it talks about), which is the understanding task the probe measures.
"""

from __future__ import annotations

import importlib
import inspect
import sys

from ssl_studio.data.imageset import DataError

SOURCES: dict[str, tuple[str, ...]] = {
    "text": ("string", "re", "textwrap", "difflib", "unicodedata", "codecs", "stringprep"),
    "numbers": ("math", "cmath", "decimal", "fractions", "statistics", "random", "numbers"),
    "files": ("os", "pathlib", "shutil", "glob", "fnmatch", "tempfile", "filecmp", "stat", "io"),
    "internet": ("socket", "ssl", "http.client", "urllib.request", "urllib.parse", "smtplib", "ftplib", "email.message", "ipaddress"),
    "concurrency": ("threading", "multiprocessing", "asyncio", "concurrent.futures", "queue", "subprocess", "sched", "selectors"),
    "formats": ("json", "csv", "pickle", "configparser", "tomllib", "xml.dom.minidom", "plistlib", "zipfile", "tarfile", "base64"),
}
MIN_PASSAGE_CHARS = 40  # shorter docstrings ("Return self.") say nothing about their source


def _doc(obj) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else ""
    return inspect.cleandoc(doc) if doc else ""


def _module_passages(name: str) -> list[str]:
    module = importlib.import_module(name)
    found = [_doc(module)]
    for attr, obj in list(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        found.append(_doc(obj))
        if inspect.isclass(obj):
            for member_name, member in list(vars(obj).items()):
                if not member_name.startswith("_") and (callable(member) or isinstance(member, property)):
                    found.append(_doc(member))
    return found


def builtin_passages() -> tuple[list[str], list[int], list[str]]:
    """(passages, label of each, source names): every distinct docstring of at least MIN_PASSAGE_CHARS."""
    if sys.flags.optimize >= 2:
        raise DataError("data.source", "text:builtin reads the standard library's docstrings, which this Python was started "
                                       "without (python -OO); start it without -OO or use text:PATH with your own .txt files.")
    seen: set[str] = set()
    passages, labels = [], []
    for label, (source, modules) in enumerate(SOURCES.items()):
        for name in modules:
            for doc in _module_passages(name):
                if len(doc) >= MIN_PASSAGE_CHARS and doc not in seen:
                    seen.add(doc)
                    passages.append(doc)
                    labels.append(label)
    return passages, labels, list(SOURCES)


__all__ = ["SOURCES", "builtin_passages"]
