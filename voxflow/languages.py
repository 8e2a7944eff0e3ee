"""Language codes, as users type them: one :class:`Language` for each.

Users may write ISO 639-1 (``fr``), ISO 639-3 or 639-2/B (``fra``, ``fre``), an NLLB code
(``fra_Latn``), a language tag with a script or region (``zh-Hant``, ``pt-BR``) or the English
name (``French``); :func:`lookup` turns each into one :class:`Language`, whose ``code`` names
output files (``talk.fr.srt``). Speech recognition and translation both start here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxflow.errors import BadInput

__all__ = ["LANGUAGES", "NLLB_CODE", "Language", "lookup"]


@dataclass(frozen=True)
class Language:
    """One language, in every code family voxflow maps to.

    Attributes:
        code: voxflow's name for it: ISO 639-1 where one exists, else ISO 639-3 (or the NLLB
            code for a language outside the table); used in file names.
        iso3: ISO 639-3 code (the macrolanguage where NLLB picks one of its members).
        nllb: NLLB-200 code (ISO 639-3 of the variety NLLB was trained on + script).
        name: English name, for messages.
    """

    code: str
    iso3: str
    nllb: str
    name: str


# code, ISO 639-3, NLLB, name. The languages of most subtitle work: every language with an
# ISO 639-1 code that Whisper, M2M100 and NLLB-200 all cover, plus a few widely spoken others.
_TABLE = """
af afr afr_Latn Afrikaans
am amh amh_Ethi Amharic
ar ara arb_Arab Arabic
az aze azj_Latn Azerbaijani
be bel bel_Cyrl Belarusian
bg bul bul_Cyrl Bulgarian
bn ben ben_Beng Bengali
bs bos bos_Latn Bosnian
ca cat cat_Latn Catalan
cs ces ces_Latn Czech
cy cym cym_Latn Welsh
da dan dan_Latn Danish
de deu deu_Latn German
el ell ell_Grek Greek
en eng eng_Latn English
es spa spa_Latn Spanish
et est est_Latn Estonian
eu eus eus_Latn Basque
fa fas pes_Arab Persian
fi fin fin_Latn Finnish
fr fra fra_Latn French
ga gle gle_Latn Irish
gl glg glg_Latn Galician
gu guj guj_Gujr Gujarati
ha hau hau_Latn Hausa
he heb heb_Hebr Hebrew
hi hin hin_Deva Hindi
hr hrv hrv_Latn Croatian
ht hat hat_Latn Haitian Creole
hu hun hun_Latn Hungarian
hy hye hye_Armn Armenian
id ind ind_Latn Indonesian
ig ibo ibo_Latn Igbo
is isl isl_Latn Icelandic
it ita ita_Latn Italian
ja jpn jpn_Jpan Japanese
jv jav jav_Latn Javanese
ka kat kat_Geor Georgian
kk kaz kaz_Cyrl Kazakh
km khm khm_Khmr Khmer
kn kan kan_Knda Kannada
ko kor kor_Hang Korean
lb ltz ltz_Latn Luxembourgish
lo lao lao_Laoo Lao
lt lit lit_Latn Lithuanian
lv lav lvs_Latn Latvian
mk mkd mkd_Cyrl Macedonian
ml mal mal_Mlym Malayalam
mn mon khk_Cyrl Mongolian
mr mar mar_Deva Marathi
ms msa zsm_Latn Malay
mt mlt mlt_Latn Maltese
my mya mya_Mymr Burmese
ne nep npi_Deva Nepali
nl nld nld_Latn Dutch
no nor nob_Latn Norwegian
pa pan pan_Guru Punjabi
pl pol pol_Latn Polish
ps pus pbt_Arab Pashto
pt por por_Latn Portuguese
ro ron ron_Latn Romanian
ru rus rus_Cyrl Russian
si sin sin_Sinh Sinhala
sk slk slk_Latn Slovak
sl slv slv_Latn Slovenian
so som som_Latn Somali
sq sqi als_Latn Albanian
sr srp srp_Cyrl Serbian
sv swe swe_Latn Swedish
sw swa swh_Latn Swahili
ta tam tam_Taml Tamil
te tel tel_Telu Telugu
tg tgk tgk_Cyrl Tajik
th tha tha_Thai Thai
tl tgl tgl_Latn Tagalog
tr tur tur_Latn Turkish
uk ukr ukr_Cyrl Ukrainian
ur urd urd_Arab Urdu
uz uzb uzn_Latn Uzbek
vi vie vie_Latn Vietnamese
xh xho xho_Latn Xhosa
yo yor yor_Latn Yoruba
zh zho zho_Hans Chinese (Simplified)
zh-Hant zho zho_Hant Chinese (Traditional)
yue yue yue_Hant Cantonese
zu zul zul_Latn Zulu
"""

LANGUAGES: tuple[Language, ...] = tuple(
    Language(code, iso3, nllb, name)
    for code, iso3, nllb, name in (line.split(" ", 3) for line in _TABLE.strip().splitlines())
)
"""Every language voxflow knows by name, in table order."""

# Other spellings of the same languages: ISO 639-2/B, individual-language codes that NLLB or
# Whisper use for a macrolanguage, and common tags.
_ALIASES = {
    "alb": "sq", "arm": "hy", "baq": "eu", "bur": "my", "chi": "zh", "cze": "cs", "dut": "nl",
    "fre": "fr", "geo": "ka", "ger": "de", "gre": "el", "ice": "is", "mac": "mk", "may": "ms",
    "per": "fa", "rum": "ro", "slo": "sk", "wel": "cy", "arb": "ar", "pes": "fa", "zsm": "ms",
    "lvs": "lv", "khk": "mn", "npi": "ne", "pbt": "ps", "als": "sq", "swh": "sw", "uzn": "uz",
    "azj": "az", "nob": "no", "nb": "no", "cmn": "zh", "iw": "he", "in": "id", "jw": "jv",
    "fil": "tl", "zh-hans": "zh", "zh-cn": "zh", "zh-tw": "zh-Hant", "zh-hk": "zh-Hant",
    "chinese": "zh",
}  # fmt: skip

_BY_KEY: dict[str, Language] = {}
for _lang in LANGUAGES:
    for _key in (_lang.code, _lang.iso3, _lang.nllb, _lang.name):
        _BY_KEY.setdefault(_key.lower(), _lang)
for _alias, _code in _ALIASES.items():
    _BY_KEY[_alias] = _BY_KEY[_code.lower()]

NLLB_CODE = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")
_PLAIN_CODE = re.compile(r"[a-z]{2,3}")
_TAG = re.compile(r"([a-z]{2,3})[-_]([A-Za-z]{2,4})")


def lookup(code: str) -> Language:
    """The language a user's code names.

    Args:
        code: ISO 639-1/639-3/639-2B (``fr``, ``fra``, ``fre``), NLLB (``fra_Latn``), a tag
            with script or region (``zh-Hant``, ``pt-BR``) or an English name (``French``);
            case does not matter. A well-formed
            code outside the table (``ast``, ``ace_Arab``) is accepted as it is, and a model
            that does not know it refuses it later.

    Raises:
        BadInput: The text is not a language code at all.
    """
    text = (code or "").strip()
    found = _BY_KEY.get(text.lower())
    if found is not None:
        return found
    if NLLB_CODE.fullmatch(text):
        return Language(text, text[:3], text, text)
    tag = _TAG.fullmatch(text)
    if tag and tag.group(1).lower() in _BY_KEY:
        return _BY_KEY[tag.group(1).lower()]  # a region (pt-BR) or an unlisted script
    if _PLAIN_CODE.fullmatch(text.lower()):
        return Language(text.lower(), text.lower(), text.lower(), text.lower())
    raise BadInput(
        f"{code!r} is not a language code; use ISO 639-1 (fr), ISO 639-3 (fra), an NLLB "
        "code (fra_Latn) or an English name (French), e.g. "
        f"{', '.join(lang.code for lang in LANGUAGES[:12])}, ..."
    )
