"""The book's page assets: MathJax on every page, and no <script> twice.

MathJax is loaded on every page (``app.set_html_assets_policy("always")``),
not only on pages whose body has equations: page titles with math appear in
the navigation bar of every page, and without MathJax they show as raw TeX.

With jupyter-book 1.0.4 and Sphinx 7.4 the inline configuration scripts of
sphinx-thebe and sphinx-togglebutton are registered twice, so each page
declares ``const THEBE_JS_URL`` twice and the browser reports
"Identifier 'THEBE_JS_URL' has already been declared". A script whose source
and attributes (inline body included) equal an earlier one's is removed; the
first occurrence keeps its place.

The landing page's claims table has six columns in a narrow content area:
:data:`STYLE` sets it in a smaller type so that its rows stay readable.

A page's ``<title>`` (the browser tab) is its heading as text, and MathJax
does not typeset it: a heading with math ("Robustness: $\\Delta_E$ across
training seeds") would read "\\(\\Delta_E\\)" there. :func:`plain_title`
writes the title's math as plain text (Greek letters and symbols in
Unicode, sub- and superscripts as Unicode or as plain characters: "ΔE");
the heading on the page keeps its typeset math.
"""
import html
import re

# inline CSS in every page's <head> (no static file to ship): the claims table of the landing page
STYLE = "<style>section#claims-and-evidence table { font-size: 0.8em; } " \
        "section#claims-and-evidence table td { padding: 0.3em 0.4em; }</style>"


def add_style(app, pagename, templatename, context, doctree):
    context["metatags"] = context.get("metatags", "") + STYLE



def _key(js):
    """Source and attributes; an inline script's filename is None or '' depending on how it was added."""
    attributes = getattr(js, "attributes", {}) or {}
    return str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


GREEK = dict(zip(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split(),
    "αβγδεεζηθϑικλμνξπρστυφφχψωΓΔΘΛΞΠΣΥΦΨΩ"))
SYMBOLS = {"times": "×", "cdot": "·", "to": "→", "rightarrow": "→", "leftarrow": "←", "approx": "≈", "sim": "~",
           "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "pm": "±", "infty": "∞", "in": "∈",
           "ell": "ℓ", "partial": "∂", "nabla": "∇", "sqrt": "√", "ldots": "…", "dots": "…", "mid": "|"}
SUB = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))
SUP = dict(zip("0123456789+-=()in", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁱⁿ"))
MATH = re.compile(r"\\\((.*?)\\\)|\\\[(.*?)\\\]|\$\$(.*?)\$\$|\$(.*?)\$", re.S)


def _script(text: str, table: dict) -> str:
    """``text`` in Unicode sub/superscripts when every character has one, else as it is ("Δ_E" -> "ΔE")."""
    return "".join(table[c] for c in text) if text and all(c in table for c in text) else text


def tex_to_text(tex: str) -> str:
    """Inline TeX as plain text: ``\\Delta_E`` -> "ΔE", ``\\Phi_8`` -> "Φ₈", ``x^2`` -> "x²"."""
    t = re.sub(r"\\(?:mathrm|text|mathbf|mathit|mathcal|operatorname|boldsymbol)\s*\{([^{}]*)\}", r"\1", tex)
    t = re.sub(r"\\([A-Za-z]+)\s*", lambda m: GREEK.get(m[1], SYMBOLS.get(m[1], m[1])), t)
    t = re.sub(r"\\[,;:! ]", " ", t)
    t = re.sub(r"_\{([^{}]*)\}|_(\S)", lambda m: _script(m[1] if m[1] is not None else m[2], SUB), t)
    t = re.sub(r"\^\{([^{}]*)\}|\^(\S)", lambda m: _script(m[1] if m[1] is not None else m[2], SUP), t)
    return re.sub(r"\s+", " ", t.replace("{", "").replace("}", "")).strip()


def plain_title(app, pagename, templatename, context, doctree):
    """The page's ``<title>`` with its math as plain text (the template strips tags and escapes the rest)."""
    title = context.get("title")
    if not title:
        return
    text = html.unescape(re.sub(r"<[^>]+>", "", str(title)))
    plain = MATH.sub(lambda m: tex_to_text(next(g for g in m.groups() if g is not None)), text)
    if plain != text:
        context["title"] = html.escape(plain)


def setup(app):
    app.set_html_assets_policy("always")
    app.connect("html-page-context", unique_scripts, priority=900)
    app.connect("html-page-context", add_style)
    app.connect("html-page-context", plain_title)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
