"""The charts' JavaScript: Vega, Vega-Lite and vega-embed in one inline script (from vl-convert),
and their versions. Stage: I/O, shared by the report (render) and the history's site; it
imports neither pandas nor the analysis, so the site's pages can be built without them."""

from __future__ import annotations

from functools import lru_cache

import vl_convert


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script; built once per process (about a second).
    '</script' cannot occur in a script element, so it is escaped if it ever appears."""
    bundle: str = vl_convert.javascript_bundle()  # type: ignore[call-arg]  # the stub lacks the default
    return bundle.replace("</script", "<\\/script")


def library_versions() -> dict[str, str]:
    return {
        "vega": vl_convert.get_vega_version(),
        "vegalite": vl_convert.get_vegalite_versions()[-1],
        "embed": vl_convert.get_vega_embed_version(),
    }
