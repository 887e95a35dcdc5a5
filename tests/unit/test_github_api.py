"""The GitHub REST client (stagecraft/providers/ci/github_api.py) against the stand-in of
GitHub's API: the calls, the error each failure turns into, pagination, retries, and
the sealed box a value travels in. Every exchange is checked against GitHub's OpenAPI
description when the test ends (tests/github_stand_in.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stagecraft.errors import ExitCode, UsageError
from stagecraft.providers.ci.github_api import (
    API_VERSION,
    GitHubClient,
    GitHubError,
    Repo,
    current_branch,
    next_link,
    parse_repo,
    repo_from_remote,
    repo_of,
    seal,
    token_from_env,
)
from tests.github_stand_in import REPO, TOKEN, github  # noqa: F401 (fixture)

SHOP = Repo("acme", "shop")


def client(stand_in, **kwargs) -> GitHubClient:
    slept: list[float] = []
    made = GitHubClient(token=kwargs.pop("token", TOKEN), base_url=stand_in.url,
                        sleep=slept.append, **kwargs)
    made.slept = slept  # type: ignore[attr-defined]
    return made


def test_sealed_value_arrives_intact_and_put_says_created_then_updated(github) -> None:
    api = client(github)
    key = api.public_key(SHOP, "production")
    value = "pässword with 'quotes' and\nnewline"
    assert api.put_secret(SHOP, "DATABASE_URL", value, key, "production") == "created"
    assert github.state.secret_value(REPO, "DATABASE_URL", "production") == value
    assert api.put_secret(SHOP, "DATABASE_URL", "two", key, "production") == "updated"
    assert github.state.secret_value(REPO, "DATABASE_URL", "production") == "two"
    assert [s["name"] for s in api.secrets(SHOP, "production")] == ["DATABASE_URL"]
    assert api.secrets(SHOP) == []  # the repository level is another scope
    puts = [x for x in github.exchanges if x["method"] == "PUT"]
    assert [x["status"] for x in puts] == [201, 204]
    assert all(value not in str(x) for x in github.exchanges)  # only sealed on the wire


def test_every_request_names_the_api_version_and_media_type(github) -> None:
    client(github).secrets(SHOP)
    headers = github.exchanges[-1]["request_headers"]
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == API_VERSION == "2022-11-28"


def test_a_value_sealed_to_another_key_is_refused_with_422(github) -> None:
    api = client(github)
    repo_key = api.public_key(SHOP)
    env_key = api.public_key(SHOP, "production")
    forged = {"key_id": env_key["key_id"], "key": repo_key["key"]}
    with pytest.raises(GitHubError) as caught:
        api.put_secret(SHOP, "A", "x", forged, "production")
    assert caught.value.status == 422
    assert "could not decrypt" in caught.value.message
    assert "PUT /repos/acme/shop/environments/production/secrets/A" in caught.value.message


def test_seal_opens_with_the_private_key_only() -> None:
    from nacl.public import PrivateKey, SealedBox
    import base64

    private = PrivateKey.generate()
    sealed = seal(base64.b64encode(bytes(private.public_key)).decode(), "s3cret")
    assert "s3cret" not in sealed
    assert SealedBox(private).decrypt(base64.b64decode(sealed)) == b"s3cret"
    assert seal(base64.b64encode(bytes(private.public_key)).decode(), "s3cret") != sealed


def test_pagination_follows_the_link_header(github) -> None:
    for number in range(7):
        github.state.set_secret(REPO, f"S{number}", "v")
    api = client(github)
    names = [s["name"] for s in api.pages("/repos/acme/shop/actions/secrets", "secrets",
                                          per_page=3)]
    assert names == [f"S{n}" for n in range(7)]
    pages = [x for x in github.exchanges if x["path"].endswith("/actions/secrets")]
    assert len(pages) == 3
    assert pages[1]["query"] == {"per_page": ["3"], "page": ["2"]}


def test_next_link_reads_rel_next_only() -> None:
    header = ('<https://api.github.com/x?page=1>; rel="prev", '
              '<https://api.github.com/x?page=3>; rel="next", '
              '<https://api.github.com/x?page=9>; rel="last"')
    assert next_link(header) == "https://api.github.com/x?page=3"
    assert next_link('<https://api.github.com/x?page=1>; rel="first"') is None
    assert next_link(None) is None


def test_429_and_5xx_are_retried_after_retry_after(github) -> None:
    github.fail("GET", "/actions/secrets$", 429, headers={"Retry-After": "7"})
    github.fail("GET", "/actions/secrets$", 503)
    api = client(github)
    assert api.secrets(SHOP) == []
    assert api.slept == [7.0, 2.0]  # Retry-After, then the backoff of a second attempt


def test_retries_stop_and_say_what_kept_failing(github) -> None:
    github.fail("GET", "/public-key$", 500, times=10)
    api = client(github, retries=2)
    with pytest.raises(GitHubError) as caught:
        api.public_key(SHOP)
    assert caught.value.status == 500
    assert caught.value.message.startswith("GitHub kept answering 500 to getting the public key")
    assert len(api.slept) == 2


@pytest.mark.parametrize("token,expected", [
    ("", "Requires authentication"), ("wrong", "Bad credentials")])
def test_401_names_the_call_and_the_token_variables(github, token: str, expected: str) -> None:
    api = client(github, token=token)
    with pytest.raises(GitHubError) as caught:
        api.secrets(SHOP, "production")
    error = caught.value
    assert error.status == 401 and error.exit_code == ExitCode.PROVIDER
    assert error.message == (f"GitHub refused the token (401: {expected}) for listing the "
                             "secrets of environment production of acme/shop (GET "
                             "/repos/acme/shop/environments/production/secrets)")
    assert "GITHUB_TOKEN" in error.hint


def test_403_hints_at_permissions(github) -> None:
    github.fail("GET", "/actions/secrets$", 403, message="Resource not accessible by integration")
    with pytest.raises(GitHubError) as caught:
        client(github).secrets(SHOP)
    assert caught.value.message == ("GitHub forbids listing the secrets of acme/shop "
                                    "(GET /repos/acme/shop/actions/secrets) (403: Resource "
                                    "not accessible by integration)")
    assert "'Secrets'" in caught.value.hint


def test_404_for_an_unknown_environment_says_how_to_fix_it(github) -> None:
    with pytest.raises(GitHubError) as caught:
        client(github).public_key(SHOP, "staging")
    assert caught.value.status == 404
    assert "create the environment 'staging' in acme/shop" in caught.value.hint
    assert "--repo-level" in caught.value.hint


def test_404_for_an_unknown_repository(github) -> None:
    with pytest.raises(GitHubError) as caught:
        client(github).secrets(Repo("acme", "nothing"))
    assert caught.value.message.endswith("(GET /repos/acme/nothing/actions/secrets) "
                                         "(404: Not Found)")


def test_dispatch_returns_the_run_and_422_names_a_bad_ref(github) -> None:
    api = client(github)
    started = api.dispatch(SHOP, "stagecraft-deploy.yml", "main", {"environment": "local"})
    assert started is not None and started["workflow_run_id"] > 0
    assert api.run(SHOP, started["workflow_run_id"])["status"] == "queued"
    runs = api.runs(SHOP, "stagecraft-deploy.yml", branch="main", event="workflow_dispatch")
    assert [r["id"] for r in runs] == [started["workflow_run_id"]]
    with pytest.raises(GitHubError) as caught:
        api.dispatch(SHOP, "stagecraft-deploy.yml", "nope")
    assert "(422: No ref found for: nope)" in caught.value.message
    with pytest.raises(GitHubError) as caught:
        api.dispatch(SHOP, "missing.yml", "main")
    assert ".github/workflows/missing.yml" in caught.value.hint


def test_a_link_outside_the_base_url_is_not_followed(github) -> None:
    api = client(github)
    with pytest.raises(GitHubError, match="outside"):
        api.request("GET", "https://elsewhere.example.com/repos/acme/shop/actions/secrets")


@pytest.mark.parametrize("url", [
    "https://github.com/acme/shop.git", "https://github.com/acme/shop",
    "https://token@github.com/acme/shop.git", "git@github.com:acme/shop.git",
    "ssh://git@github.com/acme/shop.git", "git@github.com:acme/shop"])
def test_repository_from_remote_urls(url: str) -> None:
    assert repo_from_remote(url) == SHOP


def test_bad_repository_names_are_usage_errors() -> None:
    for text in ("acme", "acme/shop/x", "/shop", "acme/.."):
        with pytest.raises(UsageError):
            parse_repo(text)
    with pytest.raises(UsageError, match="remote URL"):
        repo_from_remote("/srv/git/shop")


def test_repository_and_branch_from_git(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "work")
    with pytest.raises(UsageError, match="no git remote 'origin'"):
        repo_of(tmp_path, None)
    git("remote", "add", "origin", "git@github.com:acme/shop.git")
    assert repo_of(tmp_path, None) == SHOP
    assert repo_of(tmp_path, "other/repo") == Repo("other", "repo")
    assert current_branch(tmp_path) == "work"


def test_token_from_either_variable_or_a_hint() -> None:
    assert token_from_env({"GH_TOKEN": "b"}) == "b"
    assert token_from_env({"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}) == "a"
    with pytest.raises(UsageError) as caught:
        token_from_env({})
    assert "export GITHUB_TOKEN" in caught.value.hint


def test_base_url_from_github_api_url() -> None:
    made = GitHubClient.from_env({"GITHUB_TOKEN": "tok3n", "GITHUB_API_URL": "http://127.0.0.1:9/"})
    assert made.base_url == "http://127.0.0.1:9"
    assert GitHubClient.from_env({"GITHUB_TOKEN": "t"}).base_url == "https://api.github.com"
    assert "tok3n" not in repr(made)
