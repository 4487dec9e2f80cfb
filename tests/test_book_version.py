"""The book's provenance extension (book/_ext/book_version.py): the footer names the version and
commit, and the repository and Binder buttons use the one repository URL, or are left out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))

import book_version  # noqa: E402


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:someone/ped-companion.git", "https://github.com/someone/ped-companion"),
        ("https://github.com/someone/ped-companion.git", "https://github.com/someone/ped-companion"),
        ("https://github.com/someone/ped-companion/", "https://github.com/someone/ped-companion"),
        ("ssh://git@gitlab.com:2222/group/sub/repo.git", "https://gitlab.com/group/sub/repo"),
        ("https://token@github.com/o/r", "https://github.com/o/r"),
        ("/srv/git/ped.git", None),
        ("file:///srv/git/ped.git", None),
        ("https://github.com/onlyowner", None),
    ],
)
def test_remotes_become_the_address_a_browser_opens(remote, url):
    assert book_version.https_url(remote) == url


def test_the_repository_comes_from_the_environment_before_the_checkout(monkeypatch):
    monkeypatch.setattr(book_version, "_git", lambda *a: "git@github.com:from/remote.git")
    assert book_version.repository_url({}) == "https://github.com/from/remote"
    github = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "from/actions"}
    assert book_version.repository_url(github) == "https://github.com/from/actions"
    both = {**github, "PED_REPOSITORY_URL": "https://github.com/from/variable"}
    assert book_version.repository_url(both) == "https://github.com/from/variable"
    monkeypatch.setattr(book_version, "_git", lambda *a: None)
    assert book_version.repository_url({}) is None


def test_theme_options_name_the_version_and_add_buttons_only_with_a_repository():
    base = {"launch_buttons": {"thebe": False}, "home_page_in_navbar": True}
    without = book_version.theme_options(base, "0.2.0", "abc123", None)
    assert "ped 0.2.0" in without["extra_footer"] and "<code>abc123</code>" in without["extra_footer"]
    assert "repository_url" not in without and without["launch_buttons"] == {"thebe": False}
    with_repo = book_version.theme_options(base, "0.2.0", "abc123", "https://github.com/o/r")
    assert with_repo["repository_url"] == "https://github.com/o/r"
    assert with_repo["use_repository_button"] and with_repo["path_to_docs"] == ""
    assert with_repo["launch_buttons"] == {"thebe": False, "binderhub_url": "https://mybinder.org",
                                           "notebook_interface": "jupyterlab"}  # fmt: skip
    assert base == {"launch_buttons": {"thebe": False}, "home_page_in_navbar": True}


def test_only_chapters_keep_their_launch_buttons():
    launch = {"label": "launch-buttons", "type": "group"}
    other = {"label": "download-buttons", "type": "group"}
    for page, kept in (("notebooks/02_ped_step_by_step", [launch, other]), ("intro", [other])):
        context = {"header_buttons": [launch, other]}
        book_version._chapters_only(None, page, "page.html", context, None)
        assert context["header_buttons"] == kept


def test_binder_makes_the_notebooks_the_launch_buttons_open():
    root = Path(__file__).resolve().parent.parent
    post_build = (root / ".binder" / "postBuild").read_text()
    assert "jupytext --to ipynb notebooks/*.md" in post_build
    toc = (root / "book" / "_toc.yml").read_text()
    chapters = [line.split("file: ")[1] for line in toc.splitlines() if "file: notebooks/" in line]
    assert chapters and all((root / f"{c}.md").exists() for c in chapters)
