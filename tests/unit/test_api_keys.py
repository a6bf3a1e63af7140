"""API key format: recognizable prefix, checksum for offline leak detection, lookup prefix."""

from __future__ import annotations

from clusterflow.records.organizations import KEY_PREFIX, Principal, generate_key, hash_key, parse_key


def test_generated_keys_parse_and_are_unique() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        prefix = parse_key(key)
        assert prefix is not None
        assert len(prefix) == 8
        assert key[len(KEY_PREFIX) :].startswith(prefix)


def test_a_mistyped_key_fails_its_checksum() -> None:
    key = generate_key()
    position = len(KEY_PREFIX) + 12
    flipped = key[:position] + ("A" if key[position] != "A" else "B") + key[position + 1 :]
    assert parse_key(flipped) is None
    assert parse_key(key[:-1]) is None
    assert parse_key("cfk_" + "!" * 46) is None
    assert parse_key("Bearer " + key) is None


def test_the_stored_hash_is_not_the_key() -> None:
    key = generate_key()
    assert key.encode() not in hash_key(key)
    assert hash_key(key) == hash_key(key)
    assert len(hash_key(key)) == 32


def test_roles_are_ordered() -> None:
    editor = Principal("k", "o", "editor", "n")
    assert editor.has_role("viewer")
    assert editor.has_role("editor")
    assert not editor.has_role("admin")
    assert not editor.has_role("owner")
