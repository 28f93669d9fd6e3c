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
"""

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


def setup(app):
    app.set_html_assets_policy("always")
    app.connect("html-page-context", unique_scripts, priority=900)
    app.connect("html-page-context", add_style)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
