"""Which files a user's image folder holds, with links followed safely.

The folder's layout (class sub-folders, ``train/`` + ``test/``, or flat) is
decided in folder.py; this module only lists what the folder holds, so that a
link can never multiply the data or pull it in from elsewhere:

* every real directory and every real file is visited once (by device and
  inode), whatever names lead to it; a hard-linked duplicate is read once;
* the folder's own directories (in a split layout, those under ``train/`` and
  ``test/``) are walked first, links afterwards, so a link to a folder that is
  already part of the scan is skipped, never given the files of the folder it
  points at, and never made a class of its own;
* a link to a folder or file is followed only when it resolves inside the
  root: a link that leads out of the chosen folder is skipped, so the data a
  run reads is exactly what lies under that folder (a broken link is skipped
  too);
* a link that is followed counts as what it names: ``cat/more -> ../.pool/x``
  gives class ``cat`` the images of ``.pool/x``, which is not otherwise read
  because hidden folders are never scanned.

Each skipped link (or duplicate) is recorded by its root-relative path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

SPLIT_TRAIN = ("train",)
SPLIT_TEST = ("test", "val", "valid", "validation")


def visible(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("__")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


@dataclass
class FolderTree:
    """What the scan found: per root-relative directory its sub-folders and files (logical names, sorted)."""

    root: str
    dirs: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    skipped_links: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)  # named pipes, sockets, devices: never opened (a read could wait forever)
    split: tuple[str, str] | None = None

    def files_under(self, rel_dir: str) -> list[str]:
        """Every file at any depth below ``rel_dir``, as sorted root-relative posix paths."""
        out: list[str] = []
        stack = [rel_dir]
        while stack:
            d = stack.pop()
            out.extend(_join(d, f) for f in self.files.get(d, ()))
            stack.extend(_join(d, s) for s in self.dirs.get(d, ()))
        return sorted(out)


class _Scanner:
    def __init__(self, root: str):
        self.root = root
        self.root_real = os.path.realpath(root)
        self.tree = FolderTree(root)
        self.visited: set[tuple[int, int]] = set()  # (st_dev, st_ino) of directories already walked
        self.seen_files: set[tuple[int, int]] = set()
        self.pending: list[tuple[str, str]] = []  # (rel path of a link, its absolute path), in scan order

    def _inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_real.rstrip(os.sep) + os.sep)

    def mark(self, path: str) -> bool:
        """Record a directory as visited; False when it already was (or cannot be stat'ed)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.visited:
            return False
        self.visited.add(key)
        return True

    def walk(self, rel: str, path: str) -> None:
        """Walk the real directory ``path`` (already marked) as ``rel``; links found are queued, not followed."""
        stack = [(rel, path)]
        while stack:
            rel_dir, abs_dir = stack.pop()
            sub_dirs, files = self.tree.dirs.setdefault(rel_dir, []), self.tree.files.setdefault(rel_dir, [])
            try:
                dev = os.stat(abs_dir).st_dev
                with os.scandir(abs_dir) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if not visible(e.name):
                    continue
                child = _join(rel_dir, e.name)
                try:
                    if e.is_symlink():
                        self.pending.append((child, e.path))
                    elif e.is_dir(follow_symlinks=False):
                        if self.mark(e.path):
                            sub_dirs.append(e.name)
                            stack.append((child, e.path))
                    elif e.is_file(follow_symlinks=False):
                        key = (dev, e.inode())
                        if key in self.seen_files:  # a hard link to a file already listed
                            self.tree.skipped_links.append(child)
                        else:
                            self.seen_files.add(key)
                            files.append(e.name)
                    else:
                        self.tree.special.append(child)
                except OSError:
                    continue

    def follow_links(self) -> None:
        """Follow the queued links (and those their targets hold) by the rules in the module docstring."""
        i = 0
        while i < len(self.pending):
            rel, path = self.pending[i]
            i += 1
            parent, _, name = rel.rpartition("/")
            try:
                real = os.path.realpath(path)
                st = os.stat(path)
            except (OSError, RuntimeError):  # broken link, or a loop the OS refuses to resolve
                self.tree.skipped_links.append(rel)
                continue
            if not self._inside(real):
                self.tree.skipped_links.append(rel)
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if key in self.visited:
                    self.tree.skipped_links.append(rel)
                    continue
                self.visited.add(key)
                self.tree.dirs.setdefault(parent, []).append(name)
                self.walk(rel, path)
            elif stat.S_ISREG(st.st_mode):
                if key in self.seen_files:
                    self.tree.skipped_links.append(rel)
                    continue
                self.seen_files.add(key)
                self.tree.files.setdefault(parent, []).append(name)
            else:
                self.tree.skipped_links.append(rel)
        for listing in (self.tree.dirs, self.tree.files):
            for names in listing.values():
                names.sort()
        self.tree.skipped_links.sort()
        self.tree.special.sort()


def find_split(root: str) -> tuple[str, str] | None:
    """The (train, test) sub-folder names of a split layout, as spelt on disk, or None."""
    try:
        with os.scandir(root) as it:
            names = [e.name for e in it if visible(e.name) and _is_dir(e)]
    except OSError:
        return None
    by_name = {n.lower(): n for n in sorted(names)}
    train = next((by_name[n] for n in SPLIT_TRAIN if n in by_name), None)
    test = next((by_name[n] for n in SPLIT_TEST if n in by_name), None)
    return (train, test) if train is not None and test is not None else None


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def scan_folder(root: str) -> FolderTree:
    """List ``root`` for the layout it holds: the whole tree, or only ``train/`` and ``test/`` in a split layout."""
    scanner = _Scanner(root)
    split = find_split(root)
    scanner.tree.split = split
    scanner.mark(root)
    if split is None:
        scanner.walk("", root)
    else:
        # only the two parts are read: the root's other folders are not part of the data
        for part in split:
            path = os.path.join(root, part)
            if os.path.islink(path):
                scanner.pending.append((part, path))
            elif scanner.mark(path):
                scanner.tree.dirs.setdefault("", []).append(part)
                scanner.walk(part, path)
    scanner.follow_links()
    return scanner.tree


__all__ = ["FolderTree", "SPLIT_TEST", "SPLIT_TRAIN", "find_split", "scan_folder", "visible"]
