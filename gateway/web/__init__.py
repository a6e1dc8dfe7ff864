"""The staff web console (`liuhen web`; `liuhen serve` starts it beside SMTP).

Mail stays the way work is done; the console shows its state. A newcomer finds:

- app.py — the route table, the security headers, how a page is rendered and who asks;
- auth.py — sign-in by mail (link + code), sessions, CSRF;
- pages.py — one function per page (My work, board, records, record, search, archive,
  inbox, the client's status page); a new page is a function there, a line in app.py's
  route table and a template in templates/;
- templates/ — the pages (Jinja2, autoescaped; no inline script, for the CSP);
- phrases.toml — the console's words, one table per language; mail's own phrases (states,
  roles, priorities, trace sentences) come from mail_templates/phrases.toml;
- static/ — console.css, console.js and htmx (vendored, 0BSD licence).

Handlers read through store/ (console.py, access.py, signins.py, worklist.py) and the one
projection of a record in gateway/report.py that `show`, 状态 and the export read too.
"""
