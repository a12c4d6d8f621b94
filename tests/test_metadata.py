"""
The host's entry-point reader (``conveyor.plugins._metadata``) against ``importlib.metadata``.

Each test writes fake distributions into a temporary folder on ``sys.path`` (the idea of
importlib_metadata's ``DistInfoPkg`` fixture): real installed distributions to both readers.
The reader gives distribution names normalized (PEP 503), so they are compared normalized.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

from conveyor.plugins._metadata import GROUP, EntryPoint, entry_points, normalize
from tests._support import make_distribution

Row = tuple[str, str, str, str, str]

ODD_ENTRY_POINTS = (
    "lonely = before.any:section\r\n"
    "\r\n"
    "[conveyor]\r\n"
    "# a comment\r\n"
    "   spaced   =   odd_mod : thing.attr   \r\n"
    "tight=odd_mod\r\n"
    "with_extras = odd_mod:thing [fast, small]\r\n"
    "\r\n"
    "[console_scripts]\r\n"
    "odd-tool = odd_mod:main\r\n"
    "[conveyor]\r\n"
    "again = odd_mod:thing\r\n"
    "[[doubled]]\r\n"
    "inner = odd_mod:thing\r\n"
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder first on sys.path, to install fake distributions into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


def _install(
    site: Path, dist: str, version: str, text: str | bytes, modules: dict[str, str] | None = None
) -> Path:
    """Install ``dist`` into ``site`` with ``text`` as its entry_points.txt; returns its info."""
    make_distribution(site, dist, version, {}, modules or {})
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    target = info / "entry_points.txt"
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text, encoding="utf-8", newline="")
    return info


def _ours(group: str, dists: set[str] | None = None) -> set[Row]:
    return {
        (e.name, e.value, e.group, e.distribution, e.version)
        for e in entry_points(group)
        if dists is None or e.distribution in dists
    }


def _theirs(group: str, dists: set[str] | None = None) -> set[Row]:
    rows = set()
    for ep in importlib.metadata.entry_points(group=group):
        assert ep.dist is not None
        name = normalize(ep.dist.name)
        if dists is None or name in dists:
            rows.add((ep.name, ep.value, ep.group, name, ep.dist.version))
    return rows


class TestAgainstImportlibMetadata:
    def test_same_entry_points_of_fake_distributions(self, site: Path) -> None:
        """On fake distributions, every group gives the same names, values, groups and dists."""
        _install(site, "conveyor-alpha", "1.0", "[conveyor]\nalpha = alpha_mod\n")
        _install(
            site,
            "Conveyor_Beta.Plugin",
            "2.0.post1",
            "[conveyor]\nbeta = beta_mod:plugin\n[console_scripts]\nbeta = beta_mod:main\n",
        )
        _install(site, "conveyor-odd", "0.1", ODD_ENTRY_POINTS)
        fakes = {"conveyor-alpha", "conveyor-beta-plugin", "conveyor-odd"}
        for group in (GROUP, "console_scripts", "[doubled", "doubled", "nothing"):
            assert _ours(group, fakes) == _theirs(group, fakes), group
        assert {r[0] for r in _ours(GROUP, fakes)} == {
            "alpha",
            "beta",
            "spaced",
            "tight",
            "with_extras",
            "again",
        }

    def test_first_distribution_on_the_path_wins(
        self, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A distribution installed twice is read from the first path entry, as importlib does."""
        later = tmp_path / "later"
        later.mkdir()
        _install(later, "conveyor-twice", "1.0", "[conveyor]\nold = twice_old\n")
        monkeypatch.syspath_prepend(str(later))  # now before site ...
        _install(site, "conveyor-twice", "2.0", "[conveyor]\nnew = twice_new\n")
        monkeypatch.syspath_prepend(str(site))  # ... and site before it again
        importlib.invalidate_caches()
        rows = _ours(GROUP, {"conveyor-twice"})
        assert rows == _theirs(GROUP, {"conveyor-twice"})
        assert rows == {("new", "twice_new", GROUP, "conveyor-twice", "2.0")}

    def test_same_conveyor_group_as_the_environment(self, site: Path) -> None:
        """On the whole of sys.path, the group the host loads is what importlib.metadata sees."""
        _install(site, "conveyor-alpha", "1.0", "[conveyor]\nalpha = alpha_mod\n")
        assert _ours(GROUP) == _theirs(GROUP)

    def test_loads_the_same_objects(self, site: Path) -> None:
        """An entry point loads the object importlib.metadata loads, extras and all."""
        text = "[conveyor]\nmodule = ep_mod\nattr = ep_mod:outer.inner\nextras = ep_mod:outer [x]\n"
        source = "class outer:\n    inner = 42\n"
        _install(site, "conveyor-loads", "1.0", text, {"ep_mod": source})
        ours = {e.name: e.load() for e in entry_points(GROUP) if e.distribution == "conveyor-loads"}
        theirs = {
            ep.name: ep.load()
            for ep in importlib.metadata.entry_points(group=GROUP)
            if ep.dist is not None and ep.dist.name == "conveyor-loads"
        }
        assert ours == theirs
        assert ours["attr"] == 42


class TestRobustness:
    def test_non_utf8_file_is_read_with_its_bad_bytes_replaced(self, site: Path) -> None:
        """A Latin-1 byte in entry_points.txt does not hide its entry points or anyone else's."""
        bad = b"# caf\xe9 au lait\n[conveyor]\nlatin = latin_mod\n"
        _install(site, "conveyor-latin", "1.0", bad)
        _install(site, "conveyor-alpha", "1.0", "[conveyor]\nalpha = alpha_mod\n")
        rows = _ours(GROUP, {"conveyor-latin", "conveyor-alpha"})
        assert rows == {
            ("latin", "latin_mod", GROUP, "conveyor-latin", "1.0"),
            ("alpha", "alpha_mod", GROUP, "conveyor-alpha", "1.0"),
        }

    def test_what_importlib_metadata_would_read_from_the_same_file_cleaned(
        self, site: Path, tmp_path: Path
    ) -> None:
        """The non-UTF-8 file gives what importlib.metadata gives for its UTF-8 twin."""
        _install(site, "conveyor-latin", "1.0", b"[conveyor]\nlatin = latin_mod\n# \xff\n")
        clean = tmp_path / "clean"
        clean.mkdir()
        _install(clean, "conveyor-latin", "1.0", "[conveyor]\nlatin = latin_mod\n# ?\n")
        found = importlib.metadata.distributions(path=[str(clean)])
        theirs = {(ep.name, ep.value, ep.group) for d in found for ep in d.entry_points}
        assert {r[:3] for r in _ours(GROUP, {"conveyor-latin"})} == theirs

    def test_missing_entry_points_file_and_version(self, site: Path) -> None:
        """A dist-info without entry_points.txt has none; a folder without version says so."""
        (site / "conveyor_empty-1.0.dist-info").mkdir()
        (site / "conveyor_bare.dist-info").mkdir()
        (site / "conveyor_bare.dist-info" / "entry_points.txt").write_text("[conveyor]\nb = b\n")
        assert _ours(GROUP, {"conveyor-empty"}) == set()
        assert _ours(GROUP, {"conveyor-bare"}) == {("b", "b", GROUP, "conveyor-bare", "unknown")}

    def test_a_value_that_names_no_module_says_so(self) -> None:
        """Loading an entry point whose value is not module[:attr] raises a clear ValueError."""
        bad = EntryPoint("bad", "not a module!", GROUP, "conveyor-bad", "1.0")
        with pytest.raises(ValueError, match="must give 'module' or 'module:attribute'"):
            bad.load()
