//! `kubepath trace --format html|svg` on the seed (examples/dc173), checked in a real browser:
//! headless Chromium loads the page from a file (no network), `--dump-dom` gives the DOM after
//! the page's script ran, `--screenshot` a PNG that must not be blank. Without Chromium the
//! browser checks say `skipped: chromium not installed` and pass, unless `CI` is set.
//! A snapshot with markup in a file name and an iptables comment must not inject any.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{copy_dir, root};

const URL: &str = "http://dc173prometheus1.cloud.k2.ericsson.se/";
const TIMEOUT: Duration = Duration::from_secs(60);

fn kubepath(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubepath");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("kp-html-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seed(format: &str) -> String {
    let (code, out, err) = kubepath(&[
        "trace",
        "examples/dc173",
        "--from",
        "10.210.150.87",
        "--to",
        URL,
        "--format",
        format,
    ]);
    assert_eq!(code, 1, "the seed fails (asymmetric return): {err}");
    out
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let path = std::env::var_os("PATH")?;
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser, or None after saying the test is skipped; with `CI` set a missing browser fails.
fn browser_or_skip() -> Option<PathBuf> {
    let b = chromium();
    if b.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed (.ci/run installs it)"
        );
        println!("skipped: chromium not installed");
    }
    b
}

/// Runs headless Chromium on `page` with `extra` arguments, its own profile directory, and a
/// timeout after which its process group (it and the helpers it started) is killed. Returns
/// its stdout.
fn run_chromium(bin: &Path, page: &Path, extra: &[String], profile: &Path) -> String {
    run_chromium_url(bin, &format!("file://{}", page.display()), extra, profile)
}

fn run_chromium_url(bin: &Path, url: &str, extra: &[String], profile: &Path) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait chromium") {
            break Some(st);
        }
        if start.elapsed() > TIMEOUT {
            // Its process group: the browser and the helpers it started, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Helpers left behind in its group once the browser exited.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    match status {
        None => panic!("chromium did not finish within {TIMEOUT:?}; stderr:\n{err}"),
        Some(st) => assert!(st.success(), "chromium failed ({st}); stderr:\n{err}"),
    }
    out
}

/// The pixels of an 8-bit RGB or RGBA PNG (as Chromium writes screenshots): width, height,
/// bytes per pixel and the unfiltered rows.
fn decode_png(bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut i = 8;
    let (mut w, mut h, mut bpp) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
                h = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
                assert_eq!(data[8], 8, "bit depth");
                assert_eq!(data[12], 0, "interlaced");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        i += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate IDAT");
    let stride = w * bpp;
    assert_eq!(raw.len(), h * (stride + 1), "image data size");
    let mut px = vec![0u8; h * stride];
    for y in 0..h {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for (x, &v) in line.iter().enumerate() {
            let a = if x >= bpp {
                px[y * stride + x - bpp]
            } else {
                0
            };
            let b = if y > 0 { px[(y - 1) * stride + x] } else { 0 };
            let c = if x >= bpp && y > 0 {
                px[(y - 1) * stride + x - bpp]
            } else {
                0
            };
            px[y * stride + x] = match filter {
                0 => v,
                1 => v.wrapping_add(a),
                2 => v.wrapping_add(b),
                3 => v.wrapping_add(((a as u16 + b as u16) / 2) as u8),
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    let pred = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    v.wrapping_add(pred)
                }
                f => panic!("filter {f}"),
            };
        }
    }
    (w, h, bpp, px)
}

#[test]
fn html_is_self_contained_and_escaped() {
    let html = seed("html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    // Nothing fetched: no URL but the request's own, shown as text.
    for bad in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
        assert!(
            !html.contains(bad),
            "the page refers to something outside: {bad}"
        );
    }
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one script, the page's own"
    );
    assert_eq!(html, seed("html"), "deterministic");
    let svg = seed("svg");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(!svg.contains("<script"));
    assert!(svg.contains("data-verdict=\"asymmetric-return\""));
    // --json stays an alias of --format json; dot is still there.
    let (_, j, _) = kubepath(&[
        "trace",
        "examples/dc173",
        "--from",
        "10.210.150.87",
        "--to",
        URL,
        "--json",
    ]);
    assert!(j.contains("kubepath.trace/v1"));
    assert!(seed("dot").starts_with("digraph kubepath_trace {"));
}

/// The value of attribute `name` in the tag text `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

#[test]
fn svg_layout_of_the_seed_has_no_overlaps_and_edges_end_at_boxes() {
    let svg = seed("svg");
    let mut boxes = Vec::new();
    let mut ids = HashSet::new();
    for g in svg.split("<g id=\"").skip(1) {
        let tag = &g[..g.find('>').unwrap_or(g.len())];
        let id = &g[..g.find('"').unwrap_or(0)];
        if tag.contains("class=\"node") {
            ids.insert(id.to_string());
            let rect = &g[g.find("<rect").expect("rect")..];
            let num = |k: &str| -> f64 { attr(rect, k).expect(k).parse().expect(k) };
            boxes.push((
                id.to_string(),
                num("x"),
                num("y"),
                num("width"),
                num("height"),
            ));
        }
    }
    assert!(boxes.len() >= 11 + 4 + 1 + 4, "{} boxes", boxes.len());
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart =
                a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
            assert!(apart, "{a:?} overlaps {b:?}");
        }
    }
    let mut edges = 0;
    for g in svg.split("<g id=\"").skip(1) {
        let tag = &g[..g.find('>').unwrap_or(g.len())];
        if tag.contains("class=\"edge") {
            edges += 1;
            for end in ["data-from", "data-to"] {
                let v = attr(tag, end).expect(end);
                assert!(ids.contains(v), "edge {tag} ends at {v}, no such box");
            }
        }
    }
    assert!(edges > 40, "{edges} edges");
}

#[test]
fn with_the_fix_the_reply_is_delivered() {
    let (code, svg, err) = kubepath(&[
        "trace",
        "examples/dc173",
        "--from",
        "10.210.150.87",
        "--to",
        URL,
        "--what-if",
        "ip route add 10.210.150.87/32 via 10.33.151.65",
        "--format",
        "svg",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !svg.contains(" fail\"") && !svg.contains("leaves-vrf\""),
        "no failing reply"
    );
    assert!(svg.contains("class=\"edge ret\""), "the reply is drawn");
    assert!(svg.contains("class=\"node v-ok\""), "boxes are green");
    assert!(!svg.contains("class=\"node v-fail"));
}

#[test]
fn html_in_headless_chromium() {
    let Some(bin) = browser_or_skip() else { return };
    let dir = Scratch::new("seed");
    let page = dir.0.join("trace.html");
    std::fs::write(&page, seed("html")).expect("write page");
    let (_, j, _) = kubepath(&[
        "trace",
        "examples/dc173",
        "--from",
        "10.210.150.87",
        "--to",
        URL,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&j).expect("JSON");

    let profile = dir.0.join("profile");
    let dom = run_chromium(&bin, &page, &["--dump-dom".into()], &profile);
    assert!(dom.contains("<svg"), "no SVG in the DOM:\n{dom}");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script ran to its end"
    );
    let mut names = Vec::new();
    for stage in ["nodes", "ingress_pods", "backends"] {
        let m = v["distribution"][stage].as_object().expect(stage);
        assert!(!m.is_empty(), "{stage}");
        names.extend(m.keys().cloned());
    }
    assert_eq!(names.len(), 11 + 4 + 1);
    for n in &names {
        assert!(
            dom.contains(&format!("data-name=\"{n}\"")),
            "{n} is not in the DOM"
        );
    }
    for e in v["entries"].as_array().expect("entries") {
        let id = format!(
            "data-name=\"{} / {}\"",
            e["router"].as_str().unwrap_or(""),
            e["vrf"].as_str().unwrap_or("")
        );
        assert!(dom.contains(&id), "entry {id} missing");
    }
    // Probabilities: the entry routers' halves, the nodes' 1/11, the ingress pods' 1/4.
    assert!(dom.contains(">1/2</text>"), "entry shares");
    assert_eq!(dom.matches(">1/11</text>").count(), 11, "node shares");
    assert_eq!(
        dom.matches(">ingress 1/4</text>").count(),
        4,
        "ingress shares"
    );
    // The reply: into the traffic VRF (a box of its own), then lost there.
    assert!(dom.contains("data-name=\"DC173-SLX-L1A / DC173_CCD1_traffic_vr\""));
    assert!(
        dom.contains("class=\"edge ret leaves-vrf\""),
        "the edge into the other VRF"
    );
    let fail = dom
        .find("class=\"edge ret fail\"")
        .or_else(|| dom.find("class=\"edge ret leaves-vrf fail\""))
        .expect("a failing return edge");
    let tag_end = dom[fail..].find('>').map(|e| fail + e).unwrap_or(dom.len());
    assert!(
        dom[fail..tag_end].contains("data-verdict=\"asymmetric-return\""),
        "{}",
        &dom[fail..tag_end]
    );
    assert!(dom.contains("asymmetric-return 100%"));
    // The cited lines are in the page, ready for the panel.
    assert!(dom.contains("nodes/control-plane-4qjt9/iptables-save.txt:348"));
    assert!(dom.contains("dns/cloud.k2.ericsson.se.zone:18"));

    // The panel: opened on the failing return edge (page.html#ID, as a click does), it shows
    // that edge's cited lines, file:line and text.
    let id_at = dom[..fail].rfind("id=\"").expect("the edge's id") + 4;
    let id = &dom[id_at..id_at + dom[id_at..].find('"').unwrap_or(0)];
    let dom = run_chromium_url(
        &bin,
        &format!("file://{}#{id}", page.display()),
        &["--dump-dom".into()],
        &profile,
    );
    let panel = dom.find("id=\"panel\"").expect("panel");
    let panel = &dom[panel..panel + dom[panel..].find("</div></div>").unwrap_or(0)];
    assert!(
        panel.contains("reply DC173-SLX-L1A / DC173_CCD1_traffic_vr -&gt; 10.210.150.87"),
        "{panel}"
    );
    assert!(
        panel.contains("routers/DC173-SLX-L1A/show-ip-bgp-vrf-DC173_CCD1_traffic_vr.txt:7"),
        "{panel}"
    );
    assert!(panel.contains("has no route to 10.210.150.87"), "{panel}");
    assert!(
        dom.contains("class=\"edge ret fail sel\""),
        "the edge is marked selected"
    );

    let shot = dir.0.join("shot.png");
    run_chromium(
        &bin,
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1600,1000".into(),
        ],
        &profile,
    );
    let bytes = std::fs::read(&shot).expect("screenshot written");
    let (w, h, bpp, px) = decode_png(&bytes);
    assert_eq!((w, h), (1600, 1000), "screenshot size");
    let colours: HashSet<&[u8]> = px.chunks(bpp).collect();
    let non_white = px
        .chunks(bpp)
        .filter(|p| p[..3].iter().any(|c| *c < 240))
        .count();
    println!(
        "screenshot {w}x{h}: {} distinct colours, {:.1}% non-white pixels",
        colours.len(),
        100.0 * non_white as f64 / (w * h) as f64
    );
    assert!(colours.len() > 50, "blank? only {} colours", colours.len());
    assert!(
        non_white * 100 > w * h,
        "blank? {non_white} non-white pixels"
    );
}

#[test]
fn hostile_names_do_not_inject_markup() {
    let dir = Scratch::new("hostile");
    let snap = dir.0.join("snap");
    copy_dir(&root().join("examples/dc173"), &snap);
    // Markup in an iptables comment on the path, and in the ruleset's file name.
    let evil = "</title></text></svg><script>alert(1)</script><b a='x' & y>";
    for n in std::fs::read_dir(snap.join("nodes")).expect("nodes") {
        let node = n.expect("node").path();
        let rules = node.join("iptables-save.txt");
        let text = std::fs::read_to_string(&rules).expect("iptables-save");
        let text = text.replace(
            "--comment \"kubernetes service portals\"",
            &format!("--comment \"portals {evil}\""),
        );
        std::fs::remove_file(&rules).expect("rm");
        std::fs::write(node.join("ipt<script>\"&'.txt"), text).expect("write");
    }
    let snap_s = snap.display().to_string();
    let args = |f: &'static str| {
        vec![
            "trace".to_string(),
            snap_s.clone(),
            "--from".into(),
            "10.210.150.87".into(),
            "--to".into(),
            URL.into(),
            "--format".into(),
            f.into(),
        ]
    };
    let run = |f: &'static str| {
        let a = args(f);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        kubepath(&a)
    };
    let (code, html, err) = run("html");
    assert_eq!(code, 1, "{err}");
    assert!(
        html.contains("portals &lt;/title&gt;&lt;/text&gt;&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;b a=&#39;x&#39; &amp; y&gt;"),
        "the comment is shown, escaped"
    );
    assert!(
        html.contains("ipt&lt;script&gt;&quot;&amp;&#39;.txt"),
        "the file name, escaped"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one script, the page's own"
    );
    assert!(!html.contains("<b a="));
    let (_, svg, _) = run("svg");
    assert!(!svg.contains("<script") && !svg.contains("</title></text>"));
    assert!(svg.contains("ipt&lt;script&gt;&quot;&amp;&#39;.txt"));

    let Some(bin) = browser_or_skip() else { return };
    let page = dir.0.join("hostile.html");
    std::fs::write(&page, &html).expect("write page");
    let dom = run_chromium(&bin, &page, &["--dump-dom".into()], &dir.0.join("profile"));
    assert_eq!(dom.matches("<script").count(), 1, "the DOM has one script");
    assert!(!dom.contains("<b a="), "no injected element");
    assert!(dom.contains("<svg"));
}
