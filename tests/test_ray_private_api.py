"""The private Ray APIs fernas uses (all in fernas/search/cluster.py) still exist and behave.

These fail loudly when a Ray release moves or changes one of them, instead of fernas
silently losing token auth or its idle-actor reuse.
"""

from __future__ import annotations

import inspect


def test_token_auth_switch_exists():
    from ray._private.authentication import authentication_token_setup as setup

    assert callable(setup._enable_token_auth)
    assert not [p for p in inspect.signature(setup._enable_token_auth).parameters.values()
                if p.default is inspect.Parameter.empty], "fernas calls it without arguments"


def test_object_cache_has_the_fields_keep_idle_actors_patches():
    from ray.tune.utils.object_cache import _ObjectCache

    from fernas.search.cluster import keep_idle_actors

    cache = _ObjectCache(may_keep_one=True)
    for name in ("_cached_objects", "_max_num_objects", "_num_cached_objects", "_may_keep_one"):
        assert hasattr(cache, name), name
    orig = (_ObjectCache.cache_object, _ObjectCache.flush_cached_objects)
    with keep_idle_actors(3):
        cache = _ObjectCache(may_keep_one=True)
        # nothing staged: Tune would keep one idle actor; the patch keeps up to three
        assert all(cache.cache_object("cpu", obj) for obj in ("a", "b", "c"))
        assert cache.num_cached_objects == 3
        assert list(cache.flush_cached_objects()) == []  # kept across the generation barrier
        assert sorted(cache.flush_cached_objects(force_all=True)) == ["a", "b", "c"]
    assert (_ObjectCache.cache_object, _ObjectCache.flush_cached_objects) == orig
