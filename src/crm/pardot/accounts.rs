//! Prospects into accounts. Account Engagement has no account object a
//! connector can write to, so a prospect's account is named by the first
//! of the connection's keys it has: its Salesforce account, its website's
//! domain, its email's domain, or its company name. The name is the
//! account's id in the state (`sf:…`, `domain:…`, `company:…`), so one
//! account's people are found, scored and written together.

use std::collections::BTreeMap;

use crate::config::AccountKey;

/// Mail services people use privately: their domain names no company.
const PERSONAL_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "ymail.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "zoho.com",
    "online.no",
    "hotmail.no",
    "live.no",
    "hotmail.dk",
    "live.dk",
    "jubii.dk",
    "ziggo.nl",
    "kpnmail.nl",
    "hotmail.nl",
    "live.nl",
    "wp.pl",
    "o2.pl",
    "onet.pl",
    "interia.pl",
    "op.pl",
];

/// Legal forms dropped from the end of a company name, as words after
/// punctuation became spaces (`A/S` is `a s`, `sp. z o.o.` is `sp z o o`).
const LEGAL_FORMS: &[&[&str]] = &[
    &["sp", "z", "o", "o"],
    &["spolka", "z", "o", "o"],
    &["a", "s"],
    &["b", "v"],
    &["n", "v"],
    &["s", "a"],
    &["inc"],
    &["incorporated"],
    &["llc"],
    &["ltd"],
    &["limited"],
    &["plc"],
    &["corp"],
    &["corporation"],
    &["co"],
    &["company"],
    &["gmbh"],
    &["ag"],
    &["sa"],
    &["sas"],
    &["srl"],
    &["bv"],
    &["nv"],
    &["as"],
    &["asa"],
    &["aps"],
    &["ab"],
    &["oy"],
    &["oyj"],
    &["spa"],
];

/// The account a prospect belongs to, by the first key it has; `None`
/// when it has none (it is scored alone, in no account).
pub fn account_of(values: &BTreeMap<String, String>, by: &[AccountKey]) -> Option<String> {
    by.iter().find_map(|key| {
        let value = values.get(key.field())?.trim();
        match key {
            AccountKey::SalesforceAccount => salesforce_id(value).map(|id| format!("sf:{id}")),
            AccountKey::Website => website_domain(value).map(|d| format!("domain:{d}")),
            AccountKey::EmailDomain => email_domain(value).map(|d| format!("domain:{d}")),
            AccountKey::Company => company_name(value).map(|n| format!("company:{n}")),
        }
    })
}

/// A Salesforce id's case-sensitive 15-character form (the 18-character
/// form adds a case checksum), so both name one account.
fn salesforce_id(value: &str) -> Option<&str> {
    let ok = matches!(value.len(), 15 | 18) && value.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| &value[..15])
}

/// A website's host, without `www.`: `https://www.Acme.com/about` is
/// `acme.com`.
fn website_domain(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = reqwest::Url::parse(&with_scheme).ok()?;
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    (host.contains('.') && host.parse::<std::net::IpAddr>().is_err()).then_some(host)
}

/// An email's domain, unless a personal mail service's.
fn email_domain(value: &str) -> Option<String> {
    let (_, domain) = value.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let personal = PERSONAL_MAIL.contains(&domain.as_str())
        || domain.starts_with("yahoo.")
        || domain.starts_with("hotmail.");
    (domain.contains('.') && !personal).then_some(domain)
}

/// A company name compared without case, punctuation or legal form:
/// `ACME, Inc.`, `Acme AS` and `acme` are `acme`.
fn company_name(value: &str) -> Option<String> {
    let lowered = value.to_lowercase();
    let spaced: String = lowered
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut words: Vec<&str> = spaced.split_whitespace().collect();
    // Drop legal forms from the end, but never the whole name.
    while let Some(form) = LEGAL_FORMS
        .iter()
        .find(|form| words.len() > form.len() && words.ends_with(form))
    {
        words.truncate(words.len() - form.len());
    }
    // A name longer than any company's is cut: it stays an id, not a text.
    (!words.is_empty()).then(|| words.join(" ").chars().take(MAX_NAME).collect())
}

/// The longest company name kept in an account id, in characters.
const MAX_NAME: usize = 120;
