//! The simulator as a program of its own: started on a free port, it says
//! where it listens, takes an invoice over HTTP and shows what it received.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// One HTTP/1.1 request on its own connection; the status and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    tcp.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_program_says_where_it_listens_takes_an_invoice_and_lists_it() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-erp-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the simulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").expect("its first line names the address").to_string();
    let addr = url.strip_prefix("http://").unwrap().to_string();

    let invoice = serde_json::json!({
        "document_id": "TG-1", "company": "1000", "customer": "globex", "account": "C-1", "currency": "EUR",
        "period_start": "2026-11-01", "period_end": "2026-12-01", "issue_date": "2026-11-30", "total": "12.50",
        "lines": [ { "sku": "API", "item": "I-1", "description": "calls", "quantity": "125", "unit_price": "0.1",
                     "amount": "12.50" } ]
    })
    .to_string();
    let headers = [("content-type", "application/json"), ("idempotency-key", "TG-1")];
    let (status, created) = request(&addr, "POST", "/generic/invoices", &headers, &invoice);
    assert_eq!(status, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["number"], "INV-000001");
    // The same key again replays the invoice; it is stored once.
    let (status, _) = request(&addr, "POST", "/generic/invoices", &headers, &invoice);
    assert_eq!(status, 200);
    let (status, listed) = request(&addr, "GET", "/generic/invoices", &[], "");
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["invoices"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["invoices"][0]["total"], "12.50");
    let (_, stats) = request(&addr, "GET", "/_sim/stats", &[], "");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["requests"], 2, "{stats}");
    child.kill().unwrap();
    child.wait().unwrap();
}
