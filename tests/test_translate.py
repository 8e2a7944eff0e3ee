"""Translation: language codes, and each backend on tiny real-format models (random weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from translation_models import build_all

from profiles import StageSpec
from profiles.catalog import repo_label
from tasks.registry import backend_class, load_backend
from tasks.transcript import Segment, Transcript, Word
from tasks.translate import marian_pair
from tasks.translate.languages import m2m100_languages, marian_languages, nllb_languages
from tasks.translate.stage import translate_transcript
from voxflow.errors import BackendUnavailable, BadInput, ProfileError
from voxflow.languages import LANGUAGES, lookup

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "She sells sea shells by the sea shore.",
    "   ",
    "Please call Stella.",
    "Ask her to bring these things with her from the store.",
]


@pytest.fixture(scope="session")
def tiny_translation_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.getbasetemp() / "translation-models")


def backend(models: dict[str, Path], name: str, kind: str, **options):
    spec = StageSpec(
        stage="translate",
        backend=kind,
        model=name,
        options={"beam_size": 2, "max_length": 24, **options},
    )
    return load_backend(spec, models[name])


# -- language codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["fr", "fra", "fre", "fra_Latn", "FR", "fr-CA", " fra_latn "])
def test_every_spelling_of_french_is_french(code):
    lang = lookup(code)
    assert (lang.code, lang.iso3, lang.nllb, lang.name) == ("fr", "fra", "fra_Latn", "French")


def test_macrolanguage_members_and_old_codes_map_to_the_language():
    assert lookup("arb_Arab").code == "ar"
    assert lookup("nb").code == lookup("nob_Latn").code == "no"
    assert lookup("cmn").code == "zh"
    assert lookup("iw").code == "he"
    assert lookup("zh-Hant").nllb == "zho_Hant" and lookup("zh").nllb == "zho_Hans"


def test_the_table_covers_the_common_languages_once_each():
    assert len(LANGUAGES) >= 40
    for column in ("code", "iso3", "nllb"):
        values = [getattr(lang, column) for lang in LANGUAGES]
        duplicates = {v for v in values if values.count(v) > 1}
        assert duplicates <= ({"zho"} if column == "iso3" else set()), duplicates
    assert {"en", "es", "fr", "de", "zh", "ja", "ar", "hi", "pt", "ru"} <= {
        lang.code for lang in LANGUAGES
    }


def test_codes_outside_the_table_pass_through_for_the_model_to_judge():
    assert lookup("ace_Arab").nllb == "ace_Arab"
    assert lookup("ast").code == "ast"


@pytest.mark.parametrize("bad", ["", "french!", "f", "12", "english language"])
def test_text_that_is_no_language_code_is_bad_input(bad):
    with pytest.raises(BadInput, match="not a language code"):
        lookup(bad)


def test_each_family_gets_its_own_tokens():
    nllb = nllb_languages("nllb", ["▁the", "eng_Latn", "fra_Latn", "deu_Latn", "zho_Hant"])
    assert nllb.tokens == {
        "en": "eng_Latn",
        "fr": "fra_Latn",
        "de": "deu_Latn",
        "zh-Hant": "zho_Hant",
    }
    m2m = m2m100_languages("m2m", ["▁the", "__en__", "__fr__", "__ast__"])
    assert m2m.tokens == {"en": "en", "fr": "fr", "ast": "ast"}
    assert m2m.pair("eng", "fra_Latn")[1].code == "fr"


def test_marian_is_a_fixed_pair_or_its_target_tokens():
    fixed = marian_languages("opus-mt-en-de", "en", "de")
    assert fixed.supported_pairs() == [("en", "de")]
    multi = marian_languages("opus-mt-en-ROMANCE", "en", "ROMANCE", [">>fra<<", ">>ita<<", "▁a"])
    assert multi.supported_pairs() == [("en", "fr"), ("en", "it")]
    assert multi.tokens["fr"] == ">>fra<<"


def test_an_unsupported_pair_is_refused_listing_the_supported_ones():
    with pytest.raises(BadInput) as error:
        marian_languages("opus-mt-en-de", "en", "de").pair("en", "ja")
    assert "Japanese (ja)" in str(error.value) and "supported: en->de" in str(error.value)
    many = nllb_languages("nllb", ["eng_Latn", "fra_Latn"])
    with pytest.raises(BadInput, match=r"supported: any two of en, fr"):
        many.pair("en", "de")


def test_a_marian_folder_says_its_pair_by_tokenizer_config_or_name(tmp_path):
    folder = tmp_path / "models--Helsinki-NLP--opus-mt-fr-es" / "snapshots" / "abc"
    folder.mkdir(parents=True)
    (folder / "source.spm").write_bytes(b"")
    assert repo_label(folder) == "Helsinki-NLP/opus-mt-fr-es"
    assert marian_pair(folder) == ("fr", "es")
    (folder / "tokenizer_config.json").write_text('{"source_lang": "en", "target_lang": "de"}')
    assert marian_pair(folder) == ("en", "de")
    assert marian_pair(tmp_path) is None  # no source.spm: not Marian


# -- backends on tiny models ------------------------------------------------------------------

CASES = [
    ("tiny-opus-mt-en-de", "transformers", "marian", ("en", "de")),
    ("tiny-opus-mt-en-de-ct2-int8", "ctranslate2", "marian", ("en", "de")),
    ("tiny-nllb", "transformers", "nllb", ("eng", "fra_Latn")),
    ("tiny-nllb-ct2-int8", "ctranslate2", "nllb", ("en", "fr")),
    ("tiny-m2m100", "transformers", "m2m100", ("en", "fr")),
    ("tiny-m2m100-ct2-int8", "ctranslate2", "m2m100", ("eng", "fr")),
]


@pytest.mark.parametrize(("name", "kind", "family", "pair"), CASES)
def test_backend_translates_a_batch_keeping_order_and_empties(
    tiny_translation_models, name, kind, family, pair
):
    impl = backend(tiny_translation_models, name, kind, batch_size=4)

    out = impl.translate(TEXTS, *pair)

    assert impl.family == family
    assert len(out) == len(TEXTS)
    for text, translated in zip(TEXTS, out, strict=True):
        assert isinstance(translated, str)
        assert bool(translated) == bool(text.strip()), (text, translated)
    # No language tag, special token or made-up word may leak into the text.
    joined = " ".join(out)
    for leak in ("fra_Latn", "__fr__", "</s>", "<unk>", "<pad>", "madeupword"):
        assert leak not in joined


@pytest.mark.parametrize(("name", "kind", "family", "pair"), CASES)
def test_batch_size_does_not_change_what_each_text_becomes(
    tiny_translation_models, name, kind, family, pair
):
    one = backend(tiny_translation_models, name, kind, batch_size=1).translate(TEXTS, *pair)
    many = backend(tiny_translation_models, name, kind, batch_size=8).translate(TEXTS, *pair)
    if kind == "transformers":
        assert one == many
    else:  # CTranslate2's int8 kernels may round a padded batch differently
        assert [bool(t) for t in one] == [bool(t) for t in many]


@pytest.mark.parametrize(("name", "kind"), [(c[0], c[1]) for c in CASES if c[2] == "marian"])
def test_a_fixed_pair_model_refuses_other_languages(tiny_translation_models, name, kind):
    impl = backend(tiny_translation_models, name, kind)
    assert impl.supported_pairs() == [("en", "de")]
    with pytest.raises(BadInput, match=r"does not translate English \(en\) to French"):
        impl.translate(["hello"], "en", "fr")


def test_many_to_many_models_list_their_languages(tiny_translation_models):
    impl = backend(tiny_translation_models, "tiny-nllb-ct2-int8", "ctranslate2")
    assert {"en", "fr", "de", "zh", "zh-Hant", "ja"} <= set(impl.languages.codes)
    assert ("en", "fr") in impl.supported_pairs()
    with pytest.raises(BadInput, match="any two of"):
        impl.translate(["hello"], "en", "tlh")  # Klingon: a code, but not NLLB's


def test_same_language_returns_the_texts_unchanged(tiny_translation_models):
    impl = backend(tiny_translation_models, "tiny-nllb", "transformers")
    assert impl.translate(TEXTS, "en", "eng_Latn") == TEXTS


def test_translating_a_transcript_keeps_timing_and_speakers(tiny_translation_models):
    impl = backend(tiny_translation_models, "tiny-nllb-ct2-int8", "ctranslate2")
    words = (Word(0.0, 0.4, " The"), Word(0.4, 1.0, " fox."))
    transcript = Transcript(
        language="en",
        duration=5.0,
        segments=(
            Segment(0.0, 1.0, "The fox.", words, speaker="SPEAKER_00"),
            Segment(1.5, 4.2, "She sells sea shells.", speaker="SPEAKER_01"),
        ),
        model={"name": "tiny.en"},
    )

    out = translate_transcript(impl, transcript, "fra")

    assert out.language == "fr"
    assert [(s.start, s.end, s.speaker) for s in out.segments] == [
        (0.0, 1.0, "SPEAKER_00"),
        (1.5, 4.2, "SPEAKER_01"),
    ]
    assert all(s.text and not s.words for s in out.segments)
    assert out.model == {
        "name": "tiny.en",
        "translation": {"source_language": "en", "source_languages": ["en"]},
    }


def test_each_segment_is_translated_from_its_own_language(tiny_translation_models):
    impl = backend(tiny_translation_models, "tiny-nllb-ct2-int8", "ctranslate2")
    transcript = Transcript(
        language="en",
        duration=5.0,
        segments=(
            Segment(0.0, 1.0, "The fox.", language="en"),
            Segment(1.5, 4.2, "El zorro.", language="es"),
            Segment(4.3, 4.9, "Le renard.", language="fr"),
        ),
    )

    out = translate_transcript(impl, transcript, "fra")

    assert out.model["translation"]["source_languages"] == ["en", "es", "fr"]
    assert out.segments[2].text == "Le renard.", "a segment already in the target stays as said"
    assert all(s.language == "fr" for s in out.segments)


def test_a_ct2_folder_without_its_tokenizer_is_refused_naming_the_files(
    tiny_translation_models, tmp_path
):
    broken = tmp_path / "nllb-ct2"
    shutil.copytree(tiny_translation_models["tiny-nllb-ct2-int8"], broken)
    (broken / "sentencepiece.bpe.model").unlink()
    with pytest.raises(BadInput, match="sentencepiece.bpe.model"):
        backend({"x": broken}, "x", "ctranslate2")


# -- options and registry ---------------------------------------------------------------------


def test_bad_options_are_refused_with_their_key_path():
    cls = backend_class("translate", "transformers")
    with pytest.raises(ProfileError, match=r"stages.translate.options.dtype.*float16"):
        cls.Options(dtype="float8")
    with pytest.raises(ProfileError, match="batch_size"):
        backend_class("translate", "ctranslate2").Options(batch_size=0)


def test_openvino_translation_says_why_it_is_not_there():
    with pytest.raises(BackendUnavailable) as error:
        backend_class("translate", "openvino")
    assert error.value.package == "optimum-intel"
    assert "transformers" in str(error.value) and "ctranslate2" in str(error.value)
