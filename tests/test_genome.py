"""Genome: vector <-> JSON round trips, validation messages, ids, seed designs."""

import copy
import json
import random

import pytest

from fernas import genome as g, published_spaces
from fernas.errors import GenomeError


def test_vector_json_vector_round_trip_many():
    rng = random.Random(123)
    for _ in range(500):
        vec = g.random_vector(rng)
        doc = g.from_vector(vec)
        assert g.to_vector(doc) == vec
        # through JSON text, as a user would save and load it
        assert g.to_vector(json.loads(g.dumps(doc))) == vec


def test_bounds_cover_every_gene_and_reject_outside():
    assert len(g.GENE_BOUNDS) == len(g.GENE_NAMES) == g.N_GENES
    vec = g.random_vector(random.Random(0))
    vec[0] = 6  # n_stages above 5
    with pytest.raises(GenomeError, match="n_stages"):
        g.from_vector(vec)


def test_id_ignores_name_and_dormant_genes_but_not_active_ones():
    doc = g.from_vector(g.random_vector(random.Random(5)))
    other = copy.deepcopy(doc)
    other["name"] = "renamed"
    other.pop("dormant")
    assert g.genome_id(other) == g.genome_id(doc)
    other["train"]["batch_size"] = 32 if doc["train"]["batch_size"] != 32 else 64
    assert g.genome_id(other) != g.genome_id(doc)


def test_seed_genomes_load_and_are_in_the_space(seed_paths):
    names = {p.stem for p in seed_paths}
    assert {"vgg_khaireddin", "vulpe_random_search", "sarmah_5conv", "sarmah_8conv",
            "daocong_mobilenetv2"} <= names
    for p in seed_paths:
        doc = g.load_genome(p)
        assert "source" in doc and doc["source"]["paper"]
        # in the space: encodes to a vector within bounds and decodes to the same network
        vec = g.to_vector(doc)
        assert g.genome_id(g.from_vector(vec)) == g.genome_id(doc)


@pytest.fixture
def seed_paths():
    from pathlib import Path
    from conftest import GENOMES
    return sorted(Path(GENOMES).glob("*.json"))


def test_random_search_spaces_produce_valid_genomes():
    rng = random.Random(1)
    for space in ("sarmah", "vulpe"):
        for _ in range(20):
            doc = published_spaces.sample(rng, space)
            assert all(s["block"] == "conv" and s["kernel"] == 3 for s in doc["stages"])
            assert doc["train"]["optimizer"] == "adam"


def _vgg():
    from conftest import GENOMES
    return json.load(open(f"{GENOMES}/vgg_khaireddin.json"))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("stages"), "missing key 'stages'"),
    (lambda d: d.update(colour="red"), "unknown key 'colour'"),
    (lambda d: d.update(fernas_genome=99), "unsupported version 99"),
    (lambda d: d["stages"][1].update(width=100), "stages[1].width: 100 is not allowed; expected one of 16, 24"),
    (lambda d: d["stages"][0].update(kernel="3"), "stages[0].kernel: expected a number"),
    (lambda d: d["stages"][0].update(block="resnet"), "stages[0].block"),
    (lambda d: d["stages"][0].update(expansion=6), "expansion: only allowed with block"),
    (lambda d: d["train"].update(optimizer="rmsprop"), "train.optimizer"),
    (lambda d: d["train"].update(lr=0.3), "train.lr"),
    (lambda d: d.update(stages=[]), "stages: expected 1 to 5 entries, found 0"),
    (lambda d: d["head"].update(fc="4096"), "head.fc: expected a list"),
    # wrong types are named as JSON names them, and the version must be the number 1
    (lambda d: d.update(fernas_genome="1"), 'fernas_genome: expected the integer 1, found "1" (string)'),
    (lambda d: d.update(fernas_genome=True), "fernas_genome: expected the integer 1, found true (boolean)"),
    (lambda d: d.update(head=None), "head: expected an object, found null"),
    (lambda d: d.update(stages={}), "stages: expected a list, found object"),
    # the report and `fernas runs` read fields of `evolve`: anything but an object is refused here
    (lambda d: d.update(evolve=5), "evolve: expected an object, found number"),
    (lambda d: d.update(source=[1]), "source: expected an object, found array"),
])
def test_bad_documents_name_the_field(mutate, message):
    doc = _vgg()
    mutate(doc)
    with pytest.raises(GenomeError) as err:
        g.validate(doc, where="vgg.json")
    assert message in str(err.value)
    assert str(err.value).startswith("vgg.json")


def test_load_genome_file_errors(tmp_path):
    with pytest.raises(GenomeError, match="no such file"):
        g.load_genome(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"fernas_genome": 1,')
    with pytest.raises(GenomeError, match=r"bad.json: invalid JSON at line 1"):
        g.load_genome(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(GenomeError, match="empty file"):
        g.load_genome(empty)


def test_deeply_nested_json_is_refused_in_one_line(tmp_path):
    from fernas.errors import RunDirError
    from fernas.io import read_versioned_json

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GenomeError, match=r"deep.json: invalid JSON: nested too deeply"):
        g.load_genome(deep)
    with pytest.raises(RunDirError, match=r"deep.json: corrupt checkpoint \(RecursionError"):
        read_versioned_json(deep, "version", 1, "checkpoint")


def test_unnamed_genome_is_named_after_its_file(tmp_path):
    doc = _vgg()
    del doc["name"]
    p = tmp_path / "my_design.json"
    p.write_text(json.dumps(doc))
    assert g.load_genome(p)["name"] == "my_design"


def test_save_genome_is_readable_json(tmp_path):
    doc = g.from_vector(g.random_vector(random.Random(9)))
    p = tmp_path / "x.json"
    g.save_genome(doc, p)
    assert g.load_genome(p) == g.validate(doc)
