"""The private Ray APIs fernas uses (fernas/search/cluster.py; ASHA's trial table and Tune's
placement-group factory in fernas/search/tuner.py) still exist and behave.

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


def test_asha_keeps_its_trials_where_search_asha_drops_an_own_recipe_one():
    """`SearchASHA.on_trial_complete` pops an own-recipe trial from ASHA's `_trial_info`
    (keyed by trial id), which it never entered a rung of."""
    from ray.tune.schedulers import ASHAScheduler

    from fernas.search.tuner import SearchASHA

    assert issubclass(SearchASHA, ASHAScheduler)
    asha = SearchASHA(metric="rank_score", mode="max", time_attr="training_iteration", max_t=4, grace_period=1)
    assert isinstance(asha._trial_info, dict)


def test_trial_resources_is_a_placement_group_factory():
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from fernas.search.tuner import trial_resources

    assert isinstance(trial_resources(1.0, 0.25, alone=False), PlacementGroupFactory)
