"""An assembled (not crawled) set of HTML pages with known main text, for `bench/extraction.py`.

There is no internet on the benchmark machines, so the pages are built here, deterministically from
a seed: real article text (SQuAD 2.0 Wikipedia paragraphs grouped into articles with section
headings; SciFact abstracts) wrapped in page layouts modelled on what real sites emit (a WordPress
blog, a news site, a docs site, a forum, a 1990s table layout, class-named and obfuscated div soup,
a wiki, a boilerplate-heavy portal, a `<main>` page with its share bar and related links inside
`<main>`). The boilerplate is real text too: other articles' titles, banking customer messages as
comments and forum chatter, fixed site furniture (cookie banners, newsletter boxes, menus).

The reference main text of a page is what a reader would call the article: its title, section
headings, paragraphs and list items; not bylines, captions, comments, menus, share buttons,
related links, infoboxes, reference lists or anything in `<script>`.

    pages = build_pages(seed=17)
    pages[0].layout, pages[0].html[:80], pages[0].reference[:80]
"""

from __future__ import annotations

import csv
import html
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

LAYOUTS = ("wordpress", "news", "docs", "forum", "table_legacy", "divsoup_named",
           "divsoup_obfuscated", "wiki", "portal_heavy", "main_inline_boilerplate")

SECTION_HEADINGS = (
    "Background", "History", "Overview", "Early years", "Later developments", "Legacy",
    "Origins", "Structure", "Causes", "Impact", "Reception", "Criticism", "The modern era",
    "Key figures", "How it works", "Context", "Aftermath", "Significance",
)
SECTIONS = ("World", "Politics", "Business", "Technology", "Science", "Health", "Sport",
            "Culture", "Opinion", "Travel", "Education", "Climate", "Books", "Podcasts",
            "Video", "Weather", "Local", "Money", "Style", "Food")
NAMES = ("Maria Lopez", "James Okafor", "Chen Wei", "Anna Kowalski", "Tom Becker", "Priya Nair",
         "Lucas Martin", "Sofia Rossi", "David Cohen", "Emma Larsen", "Yuki Tanaka",
         "Omar Haddad", "Grace Miller", "Ivan Petrov", "Fatima Zahra", "Noah Williams")
HANDLES = ("steamfan42", "qwerty_jo", "old_timer", "histbuff", "m.kaur", "danielr", "lurker99",
           "the_real_pat", "bookworm", "nightowl", "ferrous", "k8e", "admin_bob", "zed")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
COOKIE = (
    "We use cookies and similar technologies to improve your experience, measure audiences and "
    "show you personalised advertising. By clicking Accept all you agree to our use of cookies. "
    "You can change your choices at any time in Privacy settings.",
    "This website stores cookies on your computer. These cookies are used to collect information "
    "about how you interact with our website and allow us to remember you.",
    "Your privacy matters to us. We and our 842 partners store and access information on your "
    "device for purposes such as personalised ads and content, ad and content measurement.",
)
NEWSLETTER = (
    "Get the best stories of the week in your inbox every Friday. Sign up for our free newsletter.",
    "Never miss a story: subscribe to the morning briefing, delivered before 7am every weekday.",
    "Join 120,000 readers who get our weekly digest. No spam, unsubscribe at any time.",
)
ABOUT = (
    "Hi, I am a former teacher who writes about history, science and whatever else catches my "
    "eye. This blog has been running since 2009.",
    "Notes from a curious mind. Opinions are my own and do not reflect my employer's.",
)
LEGAL = ("Terms of use", "Privacy policy", "Cookie policy", "Accessibility", "Contact us",
         "Advertise", "Careers", "Sitemap", "Help", "Corrections", "About us", "Press")


@dataclass(frozen=True)
class Article:
    """The main text of a page: a title, and sections of (heading, blocks)."""

    title: str
    sections: tuple[tuple[str, tuple[tuple[str, object], ...]], ...]
    # blocks are ("p", text) or ("ul", (item, ...))


@dataclass(frozen=True)
class HtmlPage:
    """One benchmark page: its layout, its HTML and the reference main text."""

    name: str
    layout: str
    html: str
    reference: str


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip()) if s]


def load_articles(rng: random.Random) -> list[Article]:
    """SQuAD paragraphs grouped into articles of 4-8 paragraphs, then 50 SciFact abstracts."""
    squad = json.loads((DATA / "squad-v2-dev-subset" / "dev-v2.0.json").read_text())
    articles: list[Article] = []
    for entry in squad["data"]:
        title = entry["title"].replace("_", " ")
        paras = [p["context"].strip() for p in entry["paragraphs"]]
        i, part = 0, 1
        while i < len(paras):
            n = rng.randint(4, 8)
            group = paras[i:i + n]
            i += n
            if len(group) < 2:
                break
            sections = []
            headings = rng.sample(SECTION_HEADINGS, k=len(SECTION_HEADINGS))
            j = 0
            while j < len(group):
                k = rng.randint(1, 3)
                blocks: list[tuple[str, object]] = []
                for para in group[j:j + k]:
                    sents = _sentences(para)
                    if 3 <= len(sents) <= 7 and rng.random() < 0.15:
                        blocks.append(("ul", tuple(sents)))
                    else:
                        blocks.append(("p", para))
                sections.append(("" if j == 0 else headings.pop(), tuple(blocks)))
                j += k
            articles.append(Article(f"{title}: part {part}", tuple(sections)))
            part += 1
    rows = [json.loads(line) for line in
            (DATA / "scifact" / "corpus.jsonl").read_text().splitlines()[:2000]]
    rows = [r for r in rows if len(r["text"].split()) > 120]
    for row in rng.sample(rows, 50):
        sents = _sentences(row["text"])
        half = max(1, len(sents) // 2)
        blocks = (("p", " ".join(sents[:half])), ("p", " ".join(sents[half:])))
        sections = (("", blocks[:1]), ("Abstract" if rng.random() < 0.5 else "Summary",
                                       blocks[1:]))
        articles.append(Article(row["title"].strip().rstrip("."), sections))
    return articles


def load_chatter() -> list[str]:
    """Short real customer messages (BANKING77) used as comments, replies and forum noise."""
    with (DATA / "banking77" / "train.csv").open(newline="") as fh:
        return [row["text"].strip() for row in csv.DictReader(fh)]


def reference_text(article: Article, headings: bool = True) -> str:
    """The article as Markdown: what an ideal extractor returns."""
    out = [f"# {article.title}"]
    for heading, blocks in article.sections:
        if heading and headings:
            out.append(f"## {heading}")
        for kind, value in blocks:
            if kind == "p":
                out.append(str(value))
            else:
                out.extend(f"- {item}" for item in value)  # type: ignore[union-attr]
    return "\n\n".join(out)


def e(text: str) -> str:
    return html.escape(text, quote=True)


class Furniture:
    """Site furniture drawn from a seeded generator: menus, widgets, comments, footers."""

    def __init__(self, rng: random.Random, titles: list[str], chatter: list[str]):
        self.rng, self.titles, self.chatter = rng, titles, chatter

    def date(self) -> str:
        r = self.rng
        return f"{r.randint(1, 28)} {r.choice(MONTHS)} {r.randint(2009, 2026)}"

    def links(self, lo: int, hi: int, pool: tuple[str, ...] | list[str] | None = None) -> str:
        pool = pool or self.titles
        items = self.rng.sample(list(pool), k=min(len(pool), self.rng.randint(lo, hi)))
        return "".join(f'<li><a href="/{i}">{e(t)}</a></li>' for i, t in enumerate(items))

    def menu(self, lo: int = 5, hi: int = 14) -> str:
        return f'<ul class="menu">{self.links(lo, hi, SECTIONS)}</ul>'

    def mega_menu(self) -> str:
        cols = "".join(
            f'<div class="col"><h4>{s}</h4><ul>{self.links(6, 12)}</ul></div>'
            for s in self.rng.sample(SECTIONS, k=self.rng.randint(4, 8)))
        return f'<div class="mega-menu">{cols}</div>'

    def comments(self, lo: int, hi: int, wrap: str = "wp") -> str:
        out = []
        for _ in range(self.rng.randint(lo, hi)):
            text = " ".join(self.rng.sample(self.chatter, k=self.rng.randint(1, 3)))
            who = self.rng.choice(NAMES)
            out.append(
                f'<li class="comment"><div class="comment-author vcard"><b class="fn">{who}</b>'
                f' says:</div><div class="comment-meta"><a href="#c">{self.date()} at '
                f'{self.rng.randint(1, 12)}:{self.rng.randint(10, 59)} pm</a></div>'
                f'<div class="comment-content"><p>{e(text)}</p></div>'
                f'<div class="reply"><a class="comment-reply-link" href="#r">Reply</a></div></li>')
        n = len(out)
        return (f'<div id="comments" class="comments-area"><h2 class="comments-title">{n} '
                f'thoughts on this post</h2><ol class="comment-list">{"".join(out)}</ol>'
                '<div id="respond"><h3>Leave a Reply</h3><form><p>Your email address will not '
                'be published. Required fields are marked *</p><textarea></textarea>'
                '<input type="submit" value="Post Comment"></form></div></div>')

    def footer(self) -> str:
        cols = "".join(f'<div class="footer-col"><ul>{self.links(3, 6, LEGAL)}</ul></div>'
                       for _ in range(self.rng.randint(1, 3)))
        return (f'<footer class="site-footer">{cols}<p>© {self.rng.randint(2015, 2026)} '
                'Example Media Group. All rights reserved.</p></footer>')

    def cookie(self) -> str:
        return (f'<div class="cookie-banner" id="cookie-consent"><p>{e(self.rng.choice(COOKIE))}'
                '</p><button>Accept all</button><button>Reject all</button>'
                '<a href="/privacy">Privacy settings</a></div>')

    def share(self) -> str:
        return ('<div class="share"><span>Share this article</span><a href="#">Facebook</a>'
                '<a href="#">Twitter</a><a href="#">LinkedIn</a><a href="#">Email</a>'
                '<a href="#">Copy link</a></div>')

    def newsletter(self) -> str:
        return (f'<div class="newsletter-signup"><h3>Newsletter</h3>'
                f'<p>{e(self.rng.choice(NEWSLETTER))}</p><form><input type="email" '
                'placeholder="Your email"><button>Sign up</button></form></div>')

    def scripts(self, article: Article) -> str:
        first = next(str(v) for _, blocks in article.sections for k, v in blocks if k == "p")
        ld = {"@context": "https://schema.org", "@type": "NewsArticle",
              "headline": article.title, "description": first[:300],
              "author": {"@type": "Person", "name": self.rng.choice(NAMES)}}
        return ('<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push('
                "arguments)}gtag('js',new Date());gtag('config','G-XXXX');</script>"
                f'<script type="application/ld+json">{json.dumps(ld)}</script>')


def body_semantic(article: Article, heading_tag: str = "h2", cls: str = "") -> str:
    """The article as plain semantic HTML (h1, h2, p, ul)."""
    out = [f"<h1{cls}>{e(article.title)}</h1>"]
    for heading, blocks in article.sections:
        if heading:
            out.append(f"<{heading_tag}{cls}>{e(heading)}</{heading_tag}>")
        for kind, value in blocks:
            if kind == "p":
                out.append(f"<p{cls}>{e(str(value))}</p>")
            else:
                items = "".join(f"<li>{e(i)}</li>" for i in value)  # type: ignore[union-attr]
                out.append(f"<ul{cls}>{items}</ul>")
    return "\n".join(out)


def _paragraphs(article: Article) -> list[str]:
    out = []
    for _, blocks in article.sections:
        for kind, value in blocks:
            out.append(str(value) if kind == "p" else " ".join(value))  # type: ignore[arg-type]
    return out


def page_wordpress(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    widgets = [
        f'<section class="widget widget_recent_entries"><h2 class="widget-title">Recent Posts'
        f'</h2><ul>{f.links(4, 8)}</ul></section>',
        '<section class="widget widget_categories"><h2 class="widget-title">Categories</h2><ul>'
        + "".join(f'<li><a href="/c">{s}</a> ({r.randint(1, 90)})</li>'
                  for s in r.sample(SECTIONS, k=r.randint(4, 10))) + "</ul></section>",
        '<section class="widget widget_archive"><h2 class="widget-title">Archives</h2><ul>'
        + "".join(f'<li><a href="/a">{r.choice(MONTHS)} {r.randint(2012, 2026)}</a></li>'
                  for _ in range(r.randint(3, 12))) + "</ul></section>",
        f'<section class="widget widget_text"><h2 class="widget-title">About me</h2><div '
        f'class="textwidget"><p>{e(r.choice(ABOUT))}</p></div></section>',
        '<section class="widget widget_tag_cloud"><h2 class="widget-title">Tags</h2>'
        + " ".join(f'<a href="/t" class="tag-cloud-link">{s.lower()}</a>'
                   for s in r.sample(SECTIONS, k=8)) + "</section>",
    ]
    r.shuffle(widgets)
    body = body_semantic(a).replace("<h1>", '<h1 class="entry-title">', 1)
    header = (f'<header id="masthead" class="site-header"><p class="site-title"><a href="/">'
              f'{r.choice(NAMES)}\'s notebook</a></p><nav id="site-navigation">{f.menu()}</nav>'
              "</header>")
    wrap_article = r.random() < 0.7
    post = (f'<div class="entry-meta"><span class="posted-on">Posted on {f.date()}</span> '
            f'<span class="byline">by {r.choice(NAMES)}</span></div>'
            f'<div class="entry-content">{body}</div>'
            f'<footer class="entry-footer"><span class="cat-links">Posted in '
            f'<a href="/c">{r.choice(SECTIONS)}</a></span></footer>'
            '<nav class="post-navigation"><div class="nav-previous"><a href="/p">'
            f'{e(r.choice(f.titles))}</a></div></nav>')
    post = (f'<article class="post type-post hentry">{post}</article>' if wrap_article
            else f'<div class="post hentry">{post}</div>')
    page = (f'<div id="page" class="site">{header}<div id="content" class="site-content">'
            f'<div id="primary" class="content-area"><main id="main" class="site-main">{post}'
            f'{f.comments(0, 12)}</main></div><aside id="secondary" class="widget-area">'
            f'{"".join(widgets[:r.randint(2, 5)])}</aside></div>{f.footer()}</div>')
    return f"{a.title} – {r.choice(NAMES)}'s notebook", page


def page_news(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    paras = body_semantic(a).split("\n")
    fig = (f'<figure><img src="/img.jpg" alt="photo"><figcaption>{e(r.choice(f.titles))}. '
           f'Photograph: {r.choice(NAMES)}/Agency</figcaption></figure>')
    paras.insert(min(2, len(paras)), fig)
    if len(paras) > 5 and r.random() < 0.6:
        paras.insert(4, f'<aside class="read-more"><b>Read more:</b> <a href="/x">'
                        f'{e(r.choice(f.titles))}</a></aside>')
    if r.random() < 0.5:
        paras.insert(len(paras) // 2 + 1, '<div class="ad-slot">Advertisement</div>')
    rail = (f'<aside class="related-rail"><h3>Most read</h3><ol>{f.links(5, 10)}</ol>'
            f'<h3>Related</h3><ul>{f.links(3, 8)}</ul></aside>')
    byline = (f'<div class="byline"><span class="author">By <a href="/a">{r.choice(NAMES)}</a>'
              f'</span><time>{f.date()}</time><span>{r.randint(2, 12)} min read</span></div>')
    art = f'<article class="story">{paras[0]}{byline}{f.share()}{"".join(paras[1:])}'
    art += f.share() + (f.newsletter() if r.random() < 0.7 else "") + "</article>"
    header = (f'<header><div class="logo">The Daily Example</div><nav>{f.menu(8, 20)}</nav>'
              f'<div class="breadcrumb"><a href="/">Home</a> › <a href="/s">'
              f'{r.choice(SECTIONS)}</a></div></header>')
    main = f"<main>{art}</main>" if r.random() < 0.6 else f'<div class="main">{art}</div>'
    page = (f.cookie() if r.random() < 0.7 else "") + header + main + rail + f.footer()
    return f"{a.title} | The Daily Example", f.scripts(a) + page


def page_docs(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    toc = "".join(
        f'<li class="toc-group"><span>{s}</span><ul>{f.links(2, 6)}</ul></li>'
        for s in r.sample(SECTIONS, k=r.randint(3, 7)))
    on_page = "".join(f'<li><a href="#h{i}">{e(h)}</a></li>'
                      for i, (h, _) in enumerate(a.sections) if h)
    body = body_semantic(a)
    crumbs = (f'<nav aria-label="breadcrumb" class="breadcrumbs"><a href="/docs">Docs</a> / '
              f'<a href="/docs/g">{r.choice(SECTIONS)}</a> / <span>{e(a.title)}</span></nav>')
    page = (
        f'<div class="navbar"><a class="brand" href="/">Example Docs</a>{f.menu(3, 6)}'
        '<input placeholder="Search docs"></div><div class="container">'
        f'<nav class="sidebar" id="docs-sidebar"><ul>{toc}</ul></nav>'
        f'<main class="docs-content">{crumbs}<article class="markdown">{body}</article>'
        '<div class="edit-this-page"><a href="https://example.org/edit">Edit this page</a>'
        f'</div><div class="last-updated">Last updated on {f.date()}</div>'
        '<div class="feedback">Was this page helpful? <button>Yes</button><button>No</button>'
        f'</div><nav class="pagination"><a class="prev" href="/p">« {e(r.choice(f.titles))}</a>'
        f'<a class="next" href="/n">{e(r.choice(f.titles))} »</a></nav></main>'
        f'<div class="toc-right"><p>On this page</p><ul>{on_page}</ul></div></div>'
        f'<footer><p>Docs licensed under CC BY 4.0. {f.links(2, 4, LEGAL)}</p></footer>'
    )
    return f"{a.title} - Example Docs", page


def page_forum(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    posts = []
    paras = _paragraphs(a)
    for i, text in enumerate(paras):
        who = r.choice(HANDLES)
        quote = ""
        if i > 1 and r.random() < 0.3:
            quote = (f'<blockquote class="quote"><cite>{r.choice(HANDLES)} said:</cite>'
                     f'{e(r.choice(f.chatter))}</blockquote>')
        signature = r.choice(["Sent from my phone", "-- " + r.choice(f.chatter)])
        sig = f'<div class="signature">{e(signature)}</div>' if r.random() < 0.5 else ""
        posts.append(
            f'<div class="post" id="p{i}"><div class="postprofile"><b>{who}</b><br>Posts: '
            f'{r.randint(1, 9000)}<br>Joined: {r.choice(MONTHS)} {r.randint(2004, 2025)}</div>'
            f'<div class="postbody"><p class="author">by {who} » {f.date()}</p>{quote}'
            f'<div class="content">{e(text)}</div>{sig}</div><ul class="post-buttons">'
            '<li>Quote</li><li>Reply</li><li>Like</li></ul></div>')
    page = (
        f'<div class="headerbar"><h1 class="sitename">Example Forums</h1>{f.menu(4, 8)}</div>'
        f'<div class="navbar"><a href="/">Board index</a> ‹ <a href="/f">{r.choice(SECTIONS)}'
        f'</a></div><h2 class="topic-title"><a href="/t">{e(a.title)}</a></h2>'
        f'<div class="action-bar">Post Reply · {len(posts)} posts · Page 1 of 1</div>'
        f'{"".join(posts)}<div class="jumpbox">Jump to<ul>{f.links(5, 12, SECTIONS)}</ul></div>'
        f'<div class="online">Users browsing this forum: {", ".join(r.sample(HANDLES, 4))}</div>'
        f'{f.footer()}'
    )
    reference = "\n\n".join([f"# {a.title}", *paras])
    return f"{a.title} - Example Forums", page + "\0" + reference


def page_table_legacy(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    left = "".join(f'<a href="/{i}"><font size="2">{s}</font></a><br>'
                   for i, s in enumerate(r.sample(SECTIONS, k=r.randint(6, 14))))
    body = [f'<font size="5" face="Arial"><b>{e(a.title)}</b></font><br><br>']
    for heading, blocks in a.sections:
        if heading:
            body.append(f'<font size="4"><b>{e(heading)}</b></font><br>')
        for kind, value in blocks:
            if kind == "p":
                body.append(f'<font face="Arial" size="2">{e(str(value))}</font><br><br>')
            else:
                body.append("".join(f"&#149; {e(i)}<br>" for i in value)  # type: ignore[union-attr]
                            + "<br>")
    page = (
        '<table width="100%" border="0" cellpadding="0" cellspacing="0"><tr><td colspan="3" '
        'bgcolor="#003366"><font color="white" size="6">Welcome to my homepage</font></td></tr>'
        f'<tr><td width="150" valign="top" bgcolor="#cccccc">{left}<br><img src="/counter.gif">'
        f' You are visitor {r.randint(1000, 99999)}</td><td valign="top">{"".join(body)}</td>'
        f'<td width="160" valign="top"><b>Links</b><br>'
        + "".join(f'<a href="/l">{e(t)}</a><br>' for t in r.sample(f.titles, r.randint(4, 10)))
        + '</td></tr><tr><td colspan="3" align="center"><font size="1">Best viewed with '
        f'Netscape Navigator 4.0 at 800x600. Last updated {f.date()}.</font></td></tr></table>'
    )
    return f"{a.title}", page


def page_divsoup_named(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    cls = r.choice(["content", "post-body", "article-text", "entry", "story-body"])
    parts = [f'<div class="title"><span style="font-size:28px;font-weight:bold">'
             f'{e(a.title)}</span></div>']
    use_h = r.random() < 0.5
    for heading, blocks in a.sections:
        if heading:
            parts.append(f"<h2>{e(heading)}</h2>" if use_h
                         else f'<div class="subhead"><b>{e(heading)}</b></div>')
        for kind, value in blocks:
            if kind == "p":
                parts.append(f'<div class="para">{e(str(value))}</div>')
            else:
                parts.append("".join(f'<div class="bullet">• {e(i)}</div>' for i in value))  # type: ignore[union-attr]
    page = (
        f'<div class="top"><div class="logo">Site</div><div class="links">{f.menu()}</div></div>'
        f'<div class="wrapper"><div class="left-col">{f.links(3, 9)}</div>'
        f'<div class="{cls}">{"".join(parts)}</div>'
        f'<div class="right-col"><div class="box"><div class="box-title">Popular</div>'
        f'{f.links(4, 10)}</div>{f.newsletter() if r.random() < 0.5 else ""}</div></div>'
        f'<div class="bottom">{f.links(3, 8, LEGAL)}</div>'
    )
    return f"{a.title} :: Site", page


def page_divsoup_obfuscated(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng

    def c() -> str:
        return f' class="css-{r.getrandbits(24):06x} e{r.randint(1, 9)}{r.getrandbits(12):03x}"'

    parts = [f"<h1{c()}>{e(a.title)}</h1>"]
    for heading, blocks in a.sections:
        if heading:
            parts.append(f"<h2{c()}>{e(heading)}</h2>")
        for kind, value in blocks:
            if kind == "p":
                parts.append(f"<div{c()}><p{c()}>{e(str(value))}</p></div>")
            else:
                parts.append(f"<ul{c()}>" + "".join(f"<li{c()}>{e(i)}</li>" for i in value)  # type: ignore[union-attr]
                             + "</ul>")
    data = {"props": {"pageProps": {"article": {"title": a.title,
                                                "body": _paragraphs(a)}}}}
    page = (
        f'<div id="__next"><div{c()}><div{c()}>'
        + "".join(f"<a{c()} href=/s>{s}</a>" for s in r.sample(SECTIONS, 8))
        + f'</div><div{c()}><div{c()}>{"".join(parts)}</div><div{c()}>'
        + "".join(f"<div{c()}><a{c()} href=/r>{e(t)}</a><span{c()}>{r.randint(2, 9)} min"
                  "</span></div>"
                  for t in r.sample(f.titles, r.randint(4, 10)))
        + f'</div></div><div{c()}>{f.cookie() if r.random() < 0.5 else ""}</div></div></div>'
        f'<script id="__NEXT_DATA__" type="application/json">{json.dumps(data)}</script>'
    )
    return f"{a.title}", page


def page_wiki(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    infobox = ('<table class="infobox"><tr><th colspan="2">' + e(a.title.split(":")[0])
               + "</th></tr>" + "".join(
                   f"<tr><th>{k}</th><td>{r.choice(MONTHS)} {r.randint(1000, 2000)}</td></tr>"
                   for k in r.sample(["Founded", "Established", "Dissolved", "Began", "Ended",
                                      "Signed", "Born", "First recorded"], 3)) + "</table>")
    toc = ('<div id="toc" class="toc"><h2>Contents</h2><ul>'
           + "".join(f"<li>{i} {e(h)}</li>" for i, (h, _) in enumerate(a.sections) if h)
           + "</ul></div>")
    parts = [f'<h1 id="firstHeading" class="firstHeading">{e(a.title)}</h1>',
             '<div id="siteSub">From Examplepedia, the free encyclopedia</div>',
             '<div id="mw-content-text"><div class="mw-parser-output">', infobox]
    for n, (heading, blocks) in enumerate(a.sections):
        if heading:
            if n == 1:
                parts.append(toc)
            parts.append(f'<h2><span class="mw-headline">{e(heading)}</span><span '
                         'class="mw-editsection">[<a href="/e">edit</a>]</span></h2>')
        for kind, value in blocks:
            if kind == "p":
                text = e(str(value))
                cite = f'<sup class="reference"><a href="#c">[{r.randint(1, 40)}]</a></sup>'
                parts.append(f"<p>{text}{cite}</p>")
            else:
                parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in value) + "</ul>")  # type: ignore[union-attr]
    refs = "".join(f'<li><a href="/r">{e(t)}</a>. Retrieved {f.date()}.</li>'
                   for t in r.sample(f.titles, r.randint(4, 12)))
    parts.append(f'<h2><span class="mw-headline">References</span></h2>'
                 f'<ol class="references">{refs}</ol>')
    parts.append(f'<div class="navbox"><b>{r.choice(SECTIONS)}</b>{f.links(10, 30)}</div>'
                 "</div></div>")
    side = ('<div id="mw-panel"><div class="portal"><h3>Navigation</h3><ul>'
            f'{f.links(5, 8, SECTIONS)}</ul></div><div class="portal"><h3>Tools</h3><ul>'
            '<li>What links here</li><li>Related changes</li><li>Permanent link</li>'
            '<li>Cite this page</li></ul></div></div>')
    page = (f'<div id="content" class="mw-body" role="main">{"".join(parts)}</div>{side}'
            f'<div id="footer"><ul><li>This page was last edited on {f.date()}.</li><li>Text is '
            'available under the Creative Commons Attribution-ShareAlike License.</li></ul></div>')
    return f"{a.title} - Examplepedia", page


def page_portal_heavy(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    trending = "".join(f'<li><a href="/t">{e(t)}</a> <span>{r.randint(1, 999)}k views</span></li>'
                       for t in r.sample(f.titles, r.randint(15, 30)))
    page = (
        f'{f.cookie()}<div id="header">{f.mega_menu()}</div>'
        f'<div id="ticker">Breaking: {e(r.choice(f.titles))}</div>'
        f'<div class="ad">Advertisement</div><div id="content">{body_semantic(a)}'
        f'</div><div class="ad">Advertisement</div><div id="trending"><h3>Trending now</h3>'
        f'<ol>{trending}</ol></div>{f.mega_menu()}{f.newsletter()}{f.footer()}'
    )
    return f"{a.title} | Portal", f.scripts(a) + page


def page_main_inline(a: Article, f: Furniture) -> tuple[str, str]:
    r = f.rng
    related = (f'<section class="related"><h2>You might also like</h2><ul>{f.links(3, 8)}</ul>'
               "</section>")
    inner = f.share() + body_semantic(a) + f.share() + related
    if r.random() < 0.5:
        inner += f.newsletter()
    page = (f'<div class="skip"><a href="#main">Skip to content</a></div>'
            f'<div class="top-links">{f.menu(4, 9)}</div><main id="main">{inner}</main>'
            f'{f.footer() if r.random() < 0.5 else ""}')
    return f"{a.title}", page


BUILDERS = {
    "wordpress": page_wordpress, "news": page_news, "docs": page_docs, "forum": page_forum,
    "table_legacy": page_table_legacy, "divsoup_named": page_divsoup_named,
    "divsoup_obfuscated": page_divsoup_obfuscated, "wiki": page_wiki,
    "portal_heavy": page_portal_heavy, "main_inline_boilerplate": page_main_inline,
}


def build_pages(seed: int = 17) -> list[HtmlPage]:
    """All pages, each article in one layout (layouts dealt round robin after a seeded shuffle)."""
    rng = random.Random(seed)
    articles = load_articles(rng)
    rng.shuffle(articles)
    chatter = load_chatter()
    titles = [a.title for a in articles]
    pages = []
    for n, article in enumerate(articles):
        layout = LAYOUTS[n % len(LAYOUTS)]
        furniture = Furniture(rng, [t for t in titles if t != article.title], chatter)
        title, body = BUILDERS[layout](article, furniture)
        reference = reference_text(article)
        if "\0" in body:  # the layout has its own idea of the main text (forum: no headings)
            body, reference = body.split("\0", 1)
        head = (f'<head><meta charset="utf-8"><title>{e(title)}</title>'
                f'<meta property="og:title" content="{e(article.title)}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                '<link rel="stylesheet" href="/style.css"><style>body{font-family:sans-serif}'
                '.cookie-banner{position:fixed;bottom:0}</style></head>')
        doc = f'<!DOCTYPE html>\n<html lang="en">{head}<body>{body}</body></html>'
        pages.append(HtmlPage(f"{n:03d}-{layout}", layout, doc, reference))
    return pages
