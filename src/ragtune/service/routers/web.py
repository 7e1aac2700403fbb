"""The web page at `/`: ask, documents, checklist, reports, traces (static files, no build
step), served under a strict content-security policy."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ragtune.lab.report import inline_hashes

STATIC = Path(__file__).parent.parent / "static"  # mounted at /static by create_app


def _page_headers() -> dict[str, str]:
    """The web page loads only its own files (no inline script, no framing by other sites);
    the one exception is a lab report's own style and print script, by hash: a report opened
    in a blob: frame or tab runs under this policy."""
    style, script = inline_hashes()
    return {"Content-Security-Policy": f"default-src 'self'; style-src 'self' {style}; "
            f"script-src 'self' {script}; frame-src 'self' blob:; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


PAGE_HEADERS = _page_headers()
router = APIRouter()


@router.get("/", include_in_schema=False)
def web_page() -> FileResponse:
    """The web page: ask, documents, checklist, reports, traces (static files, no build)."""
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
