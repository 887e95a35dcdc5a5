"""Release ids: time and git source, sorted by time, parsed back."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecraft.errors import CommandFailed, ExitCode
from stagecraft.ledger.release_id import (
    GitSource,
    ReleaseIdError,
    format_release_id,
    git_source,
    is_release_id,
    new_release_id,
    parse_release_id,
)

WHEN = datetime(2026, 11, 21, 10, 15, 0, tzinfo=UTC)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(autouse=True)
def no_enclosing_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Git must not find a repository above tmp_path.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "app.txt").write_text("one\n")
    git(root, "add", "app.txt")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_clean_tree_gives_time_and_short_sha(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    assert git_source(repo) == GitSource(sha=sha, dirty=False)
    assert new_release_id(repo, now=WHEN) == f"20261121T101500Z-{sha[:7]}"


def test_changed_tracked_file_makes_it_dirty(repo: Path) -> None:
    (repo / "app.txt").write_text("two\n")
    assert new_release_id(repo, now=WHEN).endswith("-dirty")


def test_untracked_file_makes_it_dirty(repo: Path) -> None:
    (repo / "new.txt").write_text("x\n")
    assert git_source(repo).dirty


def test_ledger_dir_does_not_make_it_dirty_even_in_a_subdirectory_project(repo: Path) -> None:
    project = repo / "deploy"
    project.mkdir()
    (project / "stagecraft.yml").write_text("version: 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "project")
    (project / ".stagecraft").mkdir()
    (project / ".stagecraft" / "releases.json").write_text("{}")
    assert not git_source(project).dirty
    (repo / "elsewhere.txt").write_text("x\n")  # the rest of the repository still counts
    assert git_source(project).dirty


def test_outside_a_work_tree_is_nogit(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_source(plain) == GitSource(sha=None)
    assert new_release_id(plain, now=WHEN) == "20261121T101500Z-nogit"


def test_repository_without_commits_is_nogit(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert new_release_id(empty, now=WHEN) == "20261121T101500Z-nogit"


def test_a_git_that_fails_for_another_reason_is_an_error_not_nogit(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.gitconfig"
    broken.write_text("[broken\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(broken))
    with pytest.raises(CommandFailed) as caught:
        new_release_id(repo, now=WHEN)
    assert caught.value.message == (
        f"git cannot tell the commit of {repo}: fatal: bad config line 1 in file {broken}")
    assert "fix the git repository" in caught.value.hint


def test_times_are_written_in_utc() -> None:
    paris = datetime(2026, 11, 21, 11, 15, 0, tzinfo=timezone(timedelta(hours=1)))
    naive = datetime(2026, 11, 21, 10, 15, 0)
    source = GitSource("3f9c2ab" + "0" * 33)
    assert format_release_id(paris, source) == "20261121T101500Z-3f9c2ab"
    assert format_release_id(naive, source) == "20261121T101500Z-3f9c2ab"


def test_without_now_it_uses_the_current_time(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    made = parse_release_id(new_release_id(tmp_path)).time
    after = datetime.now(UTC)
    assert before <= made <= after


def test_parse_splits_time_sha_and_dirty() -> None:
    parsed = parse_release_id("20261121T101500Z-3f9c2ab-dirty")
    assert (parsed.time, parsed.sha, parsed.dirty) == (WHEN, "3f9c2ab", True)
    assert parse_release_id("20261121T101500Z-nogit").sha is None
    assert str(parsed) == "20261121T101500Z-3f9c2ab-dirty"


@pytest.mark.parametrize("text", [
    "", "latest", "20261121T101500Z", "20261121T101500Z-3F9C2AB", "20261121T101500Z-3f9c2ab8",
    "20261121T101500Z-nogit-dirty", "20261121T101500-3f9c2ab", "20261332T101500Z-3f9c2ab",
    "20261121T101500Z-3f9c2ab-clean", " 20261121T101500Z-3f9c2ab",
])
def test_parse_refuses_what_is_not_a_release_id(text: str) -> None:
    with pytest.raises(ReleaseIdError) as caught:
        parse_release_id(text)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "20261121T101500Z-3f9c2ab" in caught.value.hint
    assert not is_release_id(text)


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31),
                     timezones=st.just(UTC))
sources = st.one_of(
    st.just(GitSource(None)),
    st.builds(GitSource, st.text("0123456789abcdef", min_size=40, max_size=40), st.booleans()),
)


@given(times, sources, times, sources)
def test_ids_sort_by_time(first: datetime, a: GitSource, second: datetime, b: GitSource) -> None:
    id_a, id_b = format_release_id(first, a), format_release_id(second, b)
    if first.replace(microsecond=0) < second.replace(microsecond=0):
        assert id_a < id_b


@given(times, sources)
def test_parse_gives_back_what_was_formatted(when: datetime, source: GitSource) -> None:
    text = format_release_id(when, source)
    parsed = parse_release_id(text)
    assert parsed.time == when.replace(microsecond=0)
    assert (parsed.sha, parsed.dirty) == (source.short, source.dirty and source.sha is not None)
    assert str(parsed) == text
