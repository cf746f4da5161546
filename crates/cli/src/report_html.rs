//! The self-contained HTML report (`qvet report`, `audit --html`) and the
//! fleet page (`scan --html`): one file, no network, no external scripts,
//! fonts or images, a Content-Security-Policy that allows only the page's
//! own inline style and script (by their hashes), so it opens from a USB
//! stick. Every value from an image is escaped: guest content is hostile.
//!
//! Per image: the verdict and its reason with the coverage beside it; an
//! inline SVG of the disk drawn to scale (partitions, allocation, ranges
//! that differ from the reference, a mark where each finding's file lives,
//! with its details on hover and a link to its row); the findings table
//! (sortable, filterable, no server); the inventory (OS, accounts, keys,
//! services, provenance facts); the changed files as a tree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qvet_audit::finding::Severity;
use qvet_audit::run::Report;
use sha2::{Digest, Sha256};

use crate::picture::{Alloc, Picture};

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:12px 24px}
main{padding:8px 24px 48px}
section.image{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:16px 0;padding:16px 20px}
h1{font-size:20px;margin:0}h2{font-size:18px;margin:0 0 8px}h3{font-size:15px;margin:18px 0 6px}
.verdict{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:700;text-transform:uppercase;color:#fff}
.v-genuine,.v-repack-container{background:#1b7f3b}.v-modified,.v-unknown{background:#5b6475}
.v-suspicious{background:#c47a00}.v-tampered{background:#b3261e}
.top{display:flex;gap:24px;flex-wrap:wrap}.top>div{flex:1 1 360px}
.cov li.no{color:#b3261e}.cov li{margin:2px 0}
svg.disk{width:100%;height:auto;background:#fbfbfc;border:1px solid #e3e6eb}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px}
.a-data{background:#3b6fd8}.a-compressed{background:#7b4fd0}.a-zero{background:#a9c1f0}.a-unallocated{background:#e6e8ec}.a-backing{background:#2f9e8f}.a-changed{background:#e8590c}.a-reclaim{background:#2b8a3e}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e3e6eb;padding:4px 6px;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f0f2f5;user-select:none}td.ev{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.s-critical{color:#fff;background:#b3261e}.s-high{color:#fff;background:#d9480f}.s-medium{background:#ffd43b}.s-low{background:#d0ebff}.s-info{background:#eef0f3}
td.sev span{padding:1px 6px;border-radius:4px}
.filters{margin:6px 0}.filters label{margin-right:10px}
code{font-family:ui-monospace,monospace;font-size:12px}
ul.tree{list-style:none;padding-left:16px}ul.tree li{margin:1px 0}
"#;

const SCRIPT: &str = r#"
document.querySelectorAll('table.findings').forEach(function(t){
  var body=t.tBodies[0];
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var rows=Array.prototype.slice.call(body.rows);
      var dir=th.getAttribute('data-dir')==='asc'?-1:1;th.setAttribute('data-dir',dir===1?'asc':'desc');
      rows.sort(function(a,b){var x=a.cells[i].getAttribute('data-key')||a.cells[i].textContent;
        var y=b.cells[i].getAttribute('data-key')||b.cells[i].textContent;
        var nx=parseFloat(x),ny=parseFloat(y);
        if(!isNaN(nx)&&!isNaN(ny)){return (nx-ny)*dir;}return x.localeCompare(y)*dir;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
document.querySelectorAll('div.filters').forEach(function(f){
  var t=document.getElementById(f.getAttribute('data-table'));
  function apply(){
    var q=f.querySelector('input[type=search]').value.toLowerCase();
    var on={};f.querySelectorAll('input[type=checkbox]').forEach(function(c){on[c.value]=c.checked;});
    Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
      var ok=on[r.getAttribute('data-severity')]&&(q===''||r.textContent.toLowerCase().indexOf(q)>=0);
      r.style.display=ok?'':'none';});
  }
  f.addEventListener('input',apply);apply();
});
"#;

fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        qvet_inspect::base64::encode(&Sha256::digest(text.as_bytes()))
    )
}

/// The page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {}; script-src {}; img-src data:; base-uri 'none'; form-action 'none'\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{}</h1><div>qvet {} — read-only, offline; every value below was read from the image(s), nothing was run</div></header>\n\
         <main>\n{body}</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        csp_hash(STYLE),
        csp_hash(SCRIPT),
        esc(title),
        esc(title),
        env!("CARGO_PKG_VERSION"),
    )
}

fn human_bytes(n: u64) -> String {
    match crate::info::binary_units(n) {
        (_, "B") => format!("{n} B"),
        (v, unit) => format!("{v:.1} {unit}"),
    }
}

fn alloc_color(a: Alloc) -> &'static str {
    match a {
        Alloc::Data => "#3b6fd8",
        Alloc::Compressed => "#7b4fd0",
        Alloc::Zero => "#a9c1f0",
        Alloc::Unallocated => "#e6e8ec",
        Alloc::Backing => "#2f9e8f",
    }
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b3261e",
        Severity::High => "#d9480f",
        Severity::Medium => "#e0a800",
        Severity::Low => "#4c8fd6",
        Severity::Info => "#8a93a3",
    }
}

/// The disk, drawn to scale in a 1000-unit-wide SVG.
fn svg(idx: usize, pic: &Picture) -> String {
    const W: f64 = 1000.0;
    let size = pic.size.max(1) as f64;
    let x = |o: u64| (o as f64 / size * W).clamp(0.0, W);
    let w = |o: u64, l: u64| ((l as f64 / size * W).max(0.6)).min(W - x(o)).max(0.6);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"disk\" id=\"disk-{idx}\" viewBox=\"0 0 1000 172\" role=\"img\" aria-label=\"disk layout\">"
    );
    // Partitions.
    let _ = write!(
        s,
        "<text x=\"0\" y=\"10\" font-size=\"9\" fill=\"#5b6475\">partitions</text>"
    );
    for (i, p) in pic.partitions.iter().enumerate() {
        let fill = ["#dbe7ff", "#ffe8cc", "#e5dbff", "#d3f9d8"]
            .get(i % 4)
            .copied()
            .unwrap_or("#eee");
        let label = format!(
            "partition {}: {} at {} ({}){}",
            p.number,
            p.fs,
            p.start,
            human_bytes(p.len),
            p.os.as_ref().map(|o| format!(", {o}")).unwrap_or_default()
        );
        let _ = write!(
            s,
            "<g class=\"part\"><rect x=\"{:.2}\" y=\"14\" width=\"{:.2}\" height=\"26\" fill=\"{fill}\" stroke=\"#5b6475\" stroke-width=\"0.5\"><title>{}</title></rect>\
             <text x=\"{:.2}\" y=\"31\" font-size=\"10\" fill=\"#1d2330\">p{} {}</text></g>",
            x(p.start),
            w(p.start, p.len),
            esc(&label),
            x(p.start) + 2.0,
            p.number,
            esc(&p.fs)
        );
    }
    // Allocation.
    let _ = write!(
        s,
        "<text x=\"0\" y=\"52\" font-size=\"9\" fill=\"#5b6475\">allocation</text>"
    );
    for (start, len, class) in &pic.allocation {
        let _ = write!(
            s,
            "<rect class=\"alloc {}\" x=\"{:.2}\" y=\"56\" width=\"{:.2}\" height=\"20\" fill=\"{}\"><title>{} at {start}, {}</title></rect>",
            class.name(),
            x(*start),
            w(*start, *len),
            alloc_color(*class),
            class.name(),
            human_bytes(*len)
        );
    }
    // What compact would not copy.
    let _ = write!(
        s,
        "<text x=\"0\" y=\"88\" font-size=\"9\" fill=\"#5b6475\">reclaimable by qvet compact</text>"
    );
    for (start, len) in &pic.reclaimable {
        let _ = write!(
            s,
            "<rect class=\"reclaim\" x=\"{:.2}\" y=\"92\" width=\"{:.2}\" height=\"10\" fill=\"#2b8a3e\"><title>reclaimable: {} at {start} (allocated, but free space or zeros)</title></rect>",
            x(*start),
            w(*start, *len),
            human_bytes(*len)
        );
    }
    // Changes against the reference.
    let _ = write!(
        s,
        "<text x=\"0\" y=\"110\" font-size=\"9\" fill=\"#5b6475\">differs from reference</text>"
    );
    for m in &pic.changed {
        let _ = write!(
            s,
            "<rect class=\"changed\" x=\"{:.2}\" y=\"114\" width=\"{:.2}\" height=\"10\" fill=\"#e8590c\"><title>{} ({} at {})</title></rect>",
            x(m.start),
            w(m.start, m.len),
            esc(&m.label),
            human_bytes(m.len),
            m.start
        );
    }
    // Findings.
    let _ = write!(
        s,
        "<text x=\"0\" y=\"138\" font-size=\"9\" fill=\"#5b6475\">findings</text>"
    );
    for m in &pic.marks {
        let color = m.severity.map_or("#8a93a3", severity_color);
        let mx = x(m.start);
        let body = format!(
            "<g class=\"mark\"><rect x=\"{mx:.2}\" y=\"142\" width=\"{:.2}\" height=\"8\" fill=\"{color}\"/>\
             <path d=\"M{:.2} 162 l4 -9 l4 9 z\" fill=\"{color}\"/><title>{} ({} at {})</title></g>",
            w(m.start, m.len),
            mx - 4.0,
            esc(&m.label),
            human_bytes(m.len),
            m.start
        );
        match m.finding {
            Some(f) => {
                let _ = write!(s, "<a href=\"#f-{idx}-{f}\">{body}</a>");
            }
            None => s.push_str(&body),
        }
    }
    s.push_str("</svg>");
    s
}

fn legend(pic: &Picture) -> String {
    let mut s = String::from("<div class=\"legend\">");
    for (class, bytes) in &pic.totals {
        let _ = write!(
            s,
            "<span><i class=\"sw a-{}\"></i>{} {}</span>",
            class.name(),
            class.name(),
            human_bytes(*bytes)
        );
    }
    let _ = write!(
        s,
        "<span><i class=\"sw a-reclaim\"></i>reclaimable by compact {}</span>\
         <span><i class=\"sw a-changed\"></i>differs from reference ({})</span>\
         <span>▲ finding ({} placed, {} without a location on the disk)</span></div>",
        pic.reclaimable_bytes
            .map_or_else(|| "(not planned)".into(), human_bytes),
        pic.changed.len(),
        pic.marks.len(),
        pic.unplaced
    );
    s
}

fn findings_table(idx: usize, r: &Report) -> String {
    let mut s = format!(
        "<div class=\"filters\" data-table=\"findings-{idx}\"><input type=\"search\" placeholder=\"filter findings\"/> "
    );
    for sev in Severity::ALL.iter().rev() {
        let _ = write!(
            s,
            "<label><input type=\"checkbox\" value=\"{0}\" checked=\"checked\"/>{0}</label>",
            sev.name()
        );
    }
    s.push_str("</div>");
    let _ = write!(
        s,
        "<table class=\"findings\" id=\"findings-{idx}\"><thead><tr><th>severity</th><th>rule</th><th>finding</th><th>where</th><th>evidence</th></tr></thead><tbody>"
    );
    for (i, f) in r.findings.iter().enumerate() {
        let rank = f.severity as usize;
        let place = match (&f.partition, &f.path) {
            (Some(p), Some(path)) => format!(
                "p{p}:{path}{}",
                f.line.map(|l| format!(":{l}")).unwrap_or_default()
            ),
            (None, Some(path)) => path.clone(),
            _ => String::new(),
        };
        let mut ev = String::new();
        for (k, v) in f.evidence.iter().take(12) {
            let _ = write!(ev, "<div><b>{}</b>: {}</div>", esc(k), esc(v));
        }
        if let Some(sup) = &f.suppressed {
            let _ = write!(ev, "<div><b>suppressed</b>: {}</div>", esc(sup));
        }
        let _ = write!(
            s,
            "<tr id=\"f-{idx}-{i}\" data-severity=\"{sev}\"><td class=\"sev\" data-key=\"{rank}\"><span class=\"s-{sev}\">{sev}</span></td>\
             <td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td class=\"ev\">{ev}</td></tr>",
            esc(f.rule.id),
            esc(&f.title),
            esc(&place),
            sev = f.severity.name(),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn inventory(r: &Report) -> String {
    let mut s = String::new();
    if !r.os.is_empty() {
        s.push_str("<h3>Operating systems</h3><ul>");
        for o in &r.os {
            let _ = write!(
                s,
                "<li><b>{}</b> {}{}<ul>",
                esc(&o.product),
                esc(o.version.as_deref().unwrap_or("(version unknown)")),
                o.partition
                    .map(|p| format!(" — partition {p}"))
                    .unwrap_or_default()
            );
            for (k, v) in &o.details {
                let _ = write!(s, "<li>{}: {}</li>", esc(k), esc(v));
            }
            for e in o.evidence.iter().take(8) {
                let _ = write!(
                    s,
                    "<li>evidence: <code>{}</code> — {}</li>",
                    esc(&e.path),
                    esc(&e.value)
                );
            }
            s.push_str("</ul></li>");
        }
        s.push_str("</ul>");
    }
    s.push_str("<h3>Partitions</h3><table><thead><tr><th>#</th><th>filesystem</th><th>OS</th><th>entries</th><th>packages</th><th>verified files</th><th>accounts</th><th>keys</th><th>autostart</th></tr></thead><tbody>");
    for p in &r.partitions {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.number,
            esc(&p.filesystem),
            esc(p.os.as_deref().unwrap_or("")),
            p.entries,
            esc(&p.packages.as_ref().map(|(m, n)| format!("{n} ({m})")).unwrap_or_default()),
            p.verified_files,
            p.accounts,
            p.keys,
            p.persistence
        );
    }
    s.push_str("</tbody></table>");
    for p in &r.partitions {
        if !p.users.is_empty() {
            let _ = write!(s, "<h3>Accounts (partition {})</h3><table><thead><tr><th>name</th><th>uid</th><th>shell</th></tr></thead><tbody>", p.number);
            for (n, uid, shell) in &p.users {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{uid}</td><td><code>{}</code></td></tr>",
                    esc(n),
                    esc(shell)
                );
            }
            s.push_str("</tbody></table>");
        }
        if !p.authorized_keys.is_empty() {
            let _ = write!(s, "<h3>Authorized keys (partition {})</h3><table><thead><tr><th>file</th><th>accounts</th><th>type</th><th>fingerprint</th></tr></thead><tbody>", p.number);
            for (f, users, t, fp) in &p.authorized_keys {
                let _ = write!(s, "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", esc(f), esc(users), esc(t), esc(fp));
            }
            s.push_str("</tbody></table>");
        }
        if !p.services.is_empty() {
            let _ = write!(s, "<h3>Services, timers and other autostart entries (partition {})</h3><table><thead><tr><th>kind</th><th>file</th><th>runs</th></tr></thead><tbody>", p.number);
            for (k, f, what) in &p.services {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(k),
                    esc(f),
                    esc(what)
                );
            }
            s.push_str("</tbody></table>");
        }
    }
    let provenance: Vec<_> = r
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.rule.id,
                "container-fingerprint"
                    | "container-snapshot"
                    | "fs-mount-history"
                    | "iosxe-booted"
                    | "identity-genuine"
                    | "identity-content-identical"
                    | "identity-unknown"
            )
        })
        .collect();
    if !provenance.is_empty() {
        s.push_str("<h3>Provenance</h3><ul>");
        for f in provenance {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = write!(
                s,
                "<li>{} <small>{}</small></li>",
                esc(&f.title),
                esc(&ev.join("; "))
            );
        }
        s.push_str("</ul>");
    }
    s
}

/// The changed files, as a tree per partition.
fn changes_tree(r: &Report) -> String {
    if r.changes.is_empty() {
        return String::new();
    }
    // partition → path components → change
    let mut tree: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut other = Vec::new();
    for c in r.changes.iter().take(5_000) {
        let line = format!(
            "<b>{}</b> {} → {}{}",
            esc(c.kind.name()),
            c.size_a.map_or("–".into(), human_bytes),
            c.size_b.map_or("–".into(), human_bytes),
            match (&c.sha256_a, &c.sha256_b) {
                (Some(a), Some(b)) if a != b => format!(
                    " <code>sha256 {}… → {}…</code>",
                    esc(a.get(..16).unwrap_or(a)),
                    esc(b.get(..16).unwrap_or(b))
                ),
                (None, Some(b)) =>
                    format!(" <code>sha256 {}…</code>", esc(b.get(..16).unwrap_or(b))),
                _ => String::new(),
            }
        );
        match &c.path {
            Some(p) => {
                let p = String::from_utf8_lossy(p).into_owned();
                let (dir, name) =
                    p.rsplit_once('/')
                        .map_or((String::from("/"), p.clone()), |(d, n)| {
                            (
                                if d.is_empty() {
                                    "/".into()
                                } else {
                                    d.to_string()
                                },
                                n.to_string(),
                            )
                        });
                tree.entry(
                    c.partition
                        .map_or("disk".into(), |n| format!("partition {n}")),
                )
                .or_default()
                .entry(dir)
                .or_default()
                .push(format!("<li><code>{}</code> {line}</li>", esc(&name)));
            }
            None => other.push(format!(
                "<li>{line} {}</li>",
                esc(c.detail.as_deref().unwrap_or(""))
            )),
        }
    }
    let mut s = format!(
        "<h3>Changes against the reference ({})</h3>",
        r.changes.len()
    );
    for (part, dirs) in tree {
        let _ = write!(
            s,
            "<details open=\"open\"><summary>{}</summary><ul class=\"tree\">",
            esc(&part)
        );
        for (dir, items) in dirs {
            let _ = write!(s, "<li><details open=\"open\"><summary><code>{}/</code> ({})</summary><ul class=\"tree\">{}</ul></details></li>", esc(dir.trim_end_matches('/')), items.len(), items.concat());
        }
        s.push_str("</ul></details>");
    }
    if !other.is_empty() {
        let _ = write!(s, "<ul>{}</ul>", other.concat());
    }
    s
}

/// One image's section.
fn image_section(idx: usize, r: &Report, pic: &Picture) -> String {
    let mut s = format!(
        "<section class=\"image\" id=\"image-{idx}\"><h2>{}</h2><div class=\"top\"><div>\
         <p><span class=\"verdict v-{}\">{}</span></p><p class=\"reason\">{}</p><p>{}</p></div>",
        esc(&r.filename),
        esc(r.verdict.name()),
        esc(r.verdict.name()),
        esc(&r.reason),
        esc(&plain_words(r))
    );
    s.push_str("<div class=\"cov\"><b>Coverage</b><ul>");
    for c in &r.coverage.read {
        let _ = write!(s, "<li>read: {}</li>", esc(c));
    }
    for c in &r.coverage.not_read {
        let _ = write!(s, "<li class=\"no\">not read: {}</li>", esc(c));
    }
    s.push_str("</ul></div></div>");
    let _ = write!(
        s,
        "<h3>The disk ({}; {} partition(s))</h3>",
        human_bytes(pic.size),
        pic.partitions.len()
    );
    s.push_str(&svg(idx, pic));
    s.push_str(&legend(pic));
    let _ = write!(s, "<h3>Findings ({})</h3>", r.findings.len());
    s.push_str(&findings_table(idx, r));
    s.push_str(&inventory(r));
    s.push_str(&changes_tree(r));
    s.push_str("</section>\n");
    s
}

/// The verdict in plain words.
fn plain_words(r: &Report) -> String {
    let counted = |sev: Severity| {
        r.findings
            .iter()
            .filter(|f| f.effective() == Some(sev))
            .count()
    };
    let serious = counted(Severity::Critical) + counted(Severity::High);
    match r.verdict.name() {
        "genuine" => "This file is byte for byte a known original.".into(),
        "repack-container" => "The guest content equals a known original; only the container was re-encoded.".into(),
        "tampered" => format!("Something in this image fails an integrity check or matches a known indicator ({serious} critical or high finding(s)): do not run it before reading them."),
        "suspicious" => format!("Nothing proves tampering, but {serious} high and {} medium finding(s) need a look before the image is used.", counted(Severity::Medium)),
        "modified" => "The image differs from its reference, with nothing above low.".into(),
        _ => "No reference says what this image should be, and nothing above low was found.".into(),
    }
}

/// The report page for audited images.
pub fn report_page(items: &[(Report, Picture)]) -> String {
    let title = match items {
        [(r, _)] => format!("qvet report: {}", r.filename),
        _ => format!("qvet report: {} images", items.len()),
    };
    let mut body = String::new();
    if items.len() > 1 {
        body.push_str("<section class=\"image\"><h2>Images</h2><ul>");
        for (i, (r, _)) in items.iter().enumerate() {
            let _ = write!(
                body,
                "<li><a href=\"#image-{i}\">{}</a> — <span class=\"verdict v-{}\">{}</span></li>",
                esc(&r.filename),
                esc(r.verdict.name()),
                esc(r.verdict.name())
            );
        }
        body.push_str("</ul></section>");
    }
    for (i, (r, pic)) in items.iter().enumerate() {
        body.push_str(&image_section(i, r, pic));
    }
    page(&title, &body)
}

/// One row of the fleet page.
pub struct FleetRow {
    /// Where the image is.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// verify's verdict.
    pub verdict: String,
    /// What it matched or why not.
    pub detail: String,
    /// Other paths with the same content digest.
    pub duplicates: Vec<String>,
    /// The backing file it names, if an overlay.
    pub backing: Option<String>,
}

/// The fleet page (`scan --html`).
pub fn fleet_page(rows: &[FleetRow]) -> String {
    let mut body = format!(
        "<section class=\"image\"><h2>{} image(s)</h2>\
         <div class=\"filters\" data-table=\"fleet\"><input type=\"search\" placeholder=\"filter images\"/> \
         <label><input type=\"checkbox\" value=\"row\" checked=\"checked\"/>show</label></div>\
         <table class=\"findings\" id=\"fleet\"><thead><tr><th>image</th><th>verdict</th><th>size</th><th>detail</th><th>same content as</th><th>backing file</th></tr></thead><tbody>",
        rows.len()
    );
    for r in rows {
        let _ = write!(
            body,
            "<tr data-severity=\"row\"><td><code>{}</code></td><td><span class=\"verdict v-{}\">{}</span></td><td data-key=\"{}\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&r.path),
            esc(&r.verdict),
            esc(&r.verdict),
            r.size,
            human_bytes(r.size),
            esc(&r.detail),
            r.duplicates.iter().map(|d| format!("<code>{}</code>", esc(d))).collect::<Vec<_>>().join("<br/>"),
            esc(r.backing.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table></section>");
    page("qvet fleet", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_defuses_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
    }

    #[test]
    fn page_policy_pins_its_own_style_and_script() {
        let p = page("t", "<p>x</p>");
        assert!(p.contains(&csp_hash(STYLE)) && p.contains(&csp_hash(SCRIPT)));
        assert!(p.contains("default-src 'none'"));
        assert!(
            !p.contains("http:") && !p.contains("https:"),
            "no network reference of any kind"
        );
        assert!(
            !p.contains(" style=\""),
            "inline style attributes would be blocked by the policy"
        );
    }
}
