//! Deterministic synthetic people for the fake CRMs: contacts (HubSpot) and
//! prospects (Pardot) with companies, titles, sizes, countries, free-mail
//! and competitor domains, students, engagement events over the last 18
//! months, and a known "converted" outcome correlated with fit and
//! engagement, so backtests have signal.
//!
//! A person is a pure function of (seed, id, epoch): nothing is stored, so a
//! million people cost no memory until something about them is written.

use std::fmt::Write as _;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A small, fast, well-mixed generator (SplitMix64).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next();
        rng
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks by weight.
    pub(crate) fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < u64::from(*weight) {
                return item;
            }
            roll -= u64::from(*weight);
        }
        &items[items.len() - 1].0
    }
}

/// What kind of person, which drives title, fit and behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persona {
    Executive,
    Manager,
    Practitioner,
    Student,
    JobSeeker,
    Competitor,
}

/// One generated engagement event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenEvent {
    /// The neutral event type (`page_view`, `email_open`, …).
    pub kind: &'static str,
    /// Epoch milliseconds.
    pub at: i64,
    /// Attribute name and value (`url`, `campaign`, `form_id`, `asset`).
    pub attribute: Option<(&'static str, String)>,
}

/// One generated person with their company and history.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub id: u64,
    /// The CRM company the person is associated with (primary), if any.
    pub company_id: Option<u64>,
    pub persona: Persona,
    pub firstname: &'static str,
    pub lastname: &'static str,
    pub email: String,
    pub jobtitle: String,
    pub phone: Option<String>,
    pub country: &'static str,
    pub company: String,
    pub numemployees: u32,
    pub industry: &'static str,
    pub created_at: i64,
    /// Newest first.
    pub events: Vec<GenEvent>,
    /// Became a customer within 90 days of `epoch` (the backtest outcome).
    pub converted: bool,
}

impl Person {
    /// The person in the neutral JSON-line record format, with the known
    /// outcome as `outcome` (for backtests).
    pub fn to_record_json(&self) -> serde_json::Value {
        let time = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let views = self.events.iter().filter(|e| e.kind == "page_view").count();
        let mut properties = serde_json::json!({
            "email": self.email,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "jobtitle": self.jobtitle,
            "country": self.country,
            "hs_analytics_num_visits": views.div_ceil(2).to_string(),
        });
        if let Some(open) = self.events.iter().find(|e| e.kind == "email_open") {
            properties["hs_email_last_open_date"] = serde_json::json!(time(open.at));
        }
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| {
                let mut event = serde_json::json!({ "type": e.kind, "at": time(e.at) });
                if let Some((name, value)) = &e.attribute {
                    event["attributes"] = serde_json::json!({ *name: value });
                }
                event
            })
            .collect();
        serde_json::json!({
            "id": format!("p-{}", self.id),
            "properties": properties,
            "company": {
                "name": self.company,
                "numemployees": self.numemployees.to_string(),
                "industry": self.industry,
            },
            "events": events,
            "outcome": self.converted,
        })
    }
}

const FIRST: &[&str] = &[
    "Ingrid",
    "Ola",
    "Kari",
    "Lars",
    "Mette",
    "Anders",
    "Sofie",
    "Jonas",
    "Emma",
    "Pieter",
    "Sanne",
    "Daan",
    "Katarzyna",
    "Piotr",
    "Agnieszka",
    "Tomasz",
    "Nora",
    "Henrik",
    "Freja",
    "Mads",
    "Anna",
    "Jan",
];
const LAST: &[&str] = &[
    "Berg",
    "Hansen",
    "Johansen",
    "Nilsson",
    "Holm",
    "Jensen",
    "de Vries",
    "Jansen",
    "Bakker",
    "Nowak",
    "Kowalski",
    "Wiśniewska",
    "Larsen",
    "Andersen",
    "Lund",
    "Visser",
    "Kamińska",
    "Olsen",
];
const COUNTRIES: &[(&str, u32)] = &[
    ("Norway", 22),
    ("Denmark", 16),
    ("Netherlands", 18),
    ("Poland", 16),
    ("Sweden", 12),
    ("Germany", 8),
    ("United Kingdom", 5),
    ("France", 3),
];
const INDUSTRIES: &[(&str, u32)] = &[
    ("Software", 25),
    ("Financial Services", 14),
    ("Manufacturing", 16),
    ("Retail", 14),
    ("Healthcare", 9),
    ("Education", 8),
    ("Logistics", 8),
    ("Public Sector", 6),
];
const SYLLABLES: &[&str] = &[
    "nord", "lys", "data", "fjell", "havn", "stad", "vik", "mark", "tech", "bruk", "sol", "dal",
    "berg", "link", "works",
];
const FREE_MAIL: &[&str] = &["gmail.com", "hotmail.com", "outlook.com", "yahoo.com"];
/// Competitor domains the example model disqualifies.
pub const COMPETITOR_DOMAINS: &[&str] = &["rivalsoft.com", "competitor.io"];
const DEPARTMENTS: &[&str] = &[
    "Marketing",
    "Sales",
    "Revenue Operations",
    "Growth",
    "Finance",
    "IT",
    "Operations",
    "Data & Analytics",
];
const PAGES: &[(&str, u32)] = &[
    ("/pricing", 8),
    ("/product/tour", 10),
    ("/product/integrations", 6),
    ("/blog/lead-scoring-basics", 14),
    ("/blog/mql-vs-sql", 10),
    ("/careers", 4),
    ("/docs/api", 6),
    ("/analytics/dashboards", 5),
    ("/", 20),
    ("/customers", 6),
    ("/contact", 3),
];
const FORMS: &[(&str, u32)] = &[
    ("demo-request", 3),
    ("contact-us", 4),
    ("newsletter", 8),
    ("support-ticket", 2),
];
const ASSETS: &[(&str, u32)] = &[
    ("premium-roi-calculator", 2),
    ("premium-buyers-guide", 3),
    ("premium-benchmark-report", 2),
    ("ebook-lead-scoring", 5),
    ("checklist-crm-hygiene", 4),
];
const CAMPAIGNS: &[&str] = &[
    "2026-01-newsletter",
    "2026-03-webinar",
    "2026-06-product-launch",
    "2026-09-newsletter",
    "2026-10-black-friday",
];

/// How people are generated.
#[derive(Clone, Copy, Debug)]
pub struct PeopleSpec {
    pub seed: u64,
    /// The moment the data describes ("now" for the fake CRM), epoch ms.
    pub epoch_ms: i64,
    /// How active people are: events per person relative to the default
    /// (about 13 on average over 18 months, heavy-tailed).
    pub activity: f64,
    /// People are spread over this many companies; 0: about eight people
    /// a company (`people / 8 + 50`, growing with the ids).
    pub companies: u64,
}

/// One generated company (the CRM's Company record).
#[derive(Clone, Debug, PartialEq)]
pub struct CompanyFacts {
    /// The CRM id (from 1).
    pub id: u64,
    pub name: String,
    pub slug: String,
    pub numemployees: u32,
    pub industry: &'static str,
    pub country: &'static str,
    pub annual_revenue: u64,
    pub created_at: i64,
}

impl PeopleSpec {
    /// How many companies people of ids up to `people` belong to.
    pub fn companies_for(&self, people: u64) -> u64 {
        match self.companies {
            0 => people / 8 + 50,
            n => n,
        }
    }

    /// The company with this CRM id (from 1).
    pub fn company(&self, id: u64) -> CompanyFacts {
        let mut company_rng = Rng::new(self.seed ^ 0xC0FF_EE00, id.saturating_sub(1));
        let name = company_name(&mut company_rng);
        let numemployees = log_uniform(&mut company_rng, 1.0, 50_000.0) as u32;
        let industry = *company_rng.weighted(INDUSTRIES);
        let country = *company_rng.weighted(COUNTRIES);
        let slug: String = name
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let mut extra = Rng::new(self.seed ^ 0xC0FF_EE01, id);
        let annual_revenue = u64::from(numemployees) * (60_000 + extra.below(140_000));
        let created_at = self.epoch_ms - (extra.below(5 * 365) as i64 + 30) * DAY_MS;
        CompanyFacts {
            id,
            name,
            slug,
            numemployees,
            industry,
            country,
            annual_revenue,
            created_at,
        }
    }

    /// The person with this id (ids start at 1).
    pub fn person(&self, id: u64) -> Person {
        let mut rng = Rng::new(self.seed, id);
        let persona = *rng.weighted(&[
            (Persona::Practitioner, 50),
            (Persona::Manager, 25),
            (Persona::Executive, 10),
            (Persona::Student, 8),
            (Persona::JobSeeker, 5),
            (Persona::Competitor, 2),
        ]);
        let firstname = *rng.pick(FIRST);
        let lastname = *rng.pick(LAST);
        // Companies are shared: about eight people per company.
        let company_index = rng.below(self.companies_for(id));
        let facts = self.company(company_index + 1);
        let (company, numemployees, industry, country, slug) = (
            facts.name,
            facts.numemployees,
            facts.industry,
            facts.country,
            facts.slug,
        );
        let local = format!("{}.{}{}", ascii_lower(firstname), ascii_lower(lastname), id);
        let domain = match persona {
            Persona::Competitor => (*rng.pick(COMPETITOR_DOMAINS)).to_owned(),
            Persona::Student | Persona::JobSeeker => (*rng.pick(FREE_MAIL)).to_owned(),
            _ if rng.below(100) < 12 => (*rng.pick(FREE_MAIL)).to_owned(),
            _ => format!("{slug}.example"),
        };
        let email = format!("{local}@{domain}");
        let department = *rng.pick(DEPARTMENTS);
        let jobtitle = match persona {
            Persona::Executive => (*rng.pick(&[
                "CEO",
                "CFO",
                "CTO",
                "COO",
                "CMO",
                "Founder",
                "VP Sales",
                "VP Marketing",
            ]))
            .to_owned(),
            Persona::Manager => format!(
                "{} {department}",
                rng.pick(&["Head of", "Director of", "Manager,"])
                    .trim_end_matches(',')
            ),
            Persona::Practitioner => format!(
                "{department} {}",
                rng.pick(&[
                    "Specialist",
                    "Analyst",
                    "Coordinator",
                    "Consultant",
                    "Engineer"
                ])
            ),
            Persona::Student => (*rng.pick(&["Student", "Intern", "Trainee"])).to_owned(),
            Persona::JobSeeker => {
                (*rng.pick(&["Looking for work", "Open to opportunities", "Between jobs"]))
                    .to_owned()
            }
            Persona::Competitor => (*rng.pick(&[
                "Product Manager",
                "Competitive Intelligence",
                "Sales Engineer",
            ]))
            .to_owned(),
        };
        let phone = (rng.below(100) < 55).then(|| format!("+47 {:08}", rng.below(100_000_000)));
        let created_at = self.epoch_ms
            - (rng.below(36 * 30) as i64 + 1) * DAY_MS
            - rng.below(DAY_MS as u64) as i64;

        // Engagement propensity: heavy-tailed, higher for buyers.
        let appetite = match persona {
            Persona::Executive | Persona::Manager => 1.4,
            Persona::Practitioner => 1.0,
            Persona::Student | Persona::JobSeeker => 0.6,
            Persona::Competitor => 0.8,
        };
        let intensity = appetite * (-(1.0 - rng.unit()).ln()) * 12.0 * self.activity;
        let count = (intensity as usize).min((300.0 * self.activity.max(1.0)) as usize);
        let horizon_start = created_at.max(self.epoch_ms - 548 * DAY_MS);
        let span = (self.epoch_ms - horizon_start).max(DAY_MS);
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            // Skewed to recent activity: the square of a uniform pulls towards now.
            let back = (rng.unit() * rng.unit() * span as f64) as i64;
            let at = self.epoch_ms - back - rng.below(3_600_000) as i64;
            // Whole seconds, which both CRMs can state (Pardot has no ms).
            let at = at - at.rem_euclid(1000);
            events.push(random_event(&mut rng, persona, at));
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.at));

        let fit = fit_of(persona, numemployees, industry, country);
        let recent = events
            .iter()
            .filter(|e| self.epoch_ms - e.at < 90 * DAY_MS)
            .count() as f64;
        let strong = events
            .iter()
            .filter(|e| matches!(&e.attribute, Some((_, v)) if v == "/pricing" || v == "demo-request" || v.starts_with("premium-")))
            .count() as f64;
        let logit = -6.0 + 4.0 * fit + 0.5 * (1.0 + recent).ln() + 0.35 * strong.min(6.0);
        // Competitors and job seekers never buy, whatever they read.
        let can_buy = !matches!(persona, Persona::Competitor | Persona::JobSeeker);
        let converted = can_buy && rng.unit() < 1.0 / (1.0 + (-logit).exp());

        // The CRM association: students and job seekers mostly have no
        // company record, and a few others are not associated yet.
        let mut link_rng = Rng::new(self.seed ^ 0xA550_C1A7, id);
        let unlinked = match persona {
            Persona::Student | Persona::JobSeeker => link_rng.below(100) < 80,
            _ => link_rng.below(100) < 6,
        };
        Person {
            id,
            company_id: (!unlinked).then_some(company_index + 1),
            persona,
            firstname,
            lastname,
            email,
            jobtitle,
            phone,
            country,
            company,
            numemployees,
            industry,
            created_at,
            events,
            converted,
        }
    }
}

/// Fit between 0 and 1, from who the person is.
fn fit_of(persona: Persona, employees: u32, industry: &str, country: &str) -> f64 {
    let role = match persona {
        Persona::Executive => 1.0,
        Persona::Manager => 0.8,
        Persona::Practitioner => 0.45,
        Persona::Student | Persona::JobSeeker | Persona::Competitor => 0.0,
    };
    let size = if employees > 200 {
        1.0
    } else if employees > 10 {
        0.6
    } else {
        0.1
    };
    let market = ["Software", "Financial Services", "Manufacturing", "Retail"].contains(&industry);
    let core = ["Norway", "Denmark", "Netherlands", "Poland", "Sweden"].contains(&country);
    0.45 * role + 0.3 * size + 0.15 * f64::from(u8::from(market)) + 0.1 * f64::from(u8::from(core))
}

fn random_event(rng: &mut Rng, persona: Persona, at: i64) -> GenEvent {
    let kind = *rng.weighted(&[
        ("page_view", 55),
        ("email_open", 20),
        ("email_click", 7),
        ("form_submission", 4),
        ("content_download", 5),
        ("ad_click", 3),
        ("cta_click", 2),
        ("webinar", 2),
        ("meeting", 1),
        ("email_unsubscribe", 1),
    ]);
    let attribute = match kind {
        "page_view" => {
            let page = if persona == Persona::JobSeeker && rng.below(3) == 0 {
                "/careers"
            } else {
                *rng.weighted(PAGES)
            };
            Some(("url", format!("https://www.acme.example{page}")))
        }
        "email_open" | "email_click" | "email_unsubscribe" => {
            Some(("campaign", (*rng.pick(CAMPAIGNS)).to_owned()))
        }
        "form_submission" => Some(("form_id", (*rng.weighted(FORMS)).to_owned())),
        "content_download" => Some(("asset", (*rng.weighted(ASSETS)).to_owned())),
        "cta_click" | "ad_click" => Some(("campaign", (*rng.pick(CAMPAIGNS)).to_owned())),
        _ => None,
    };
    GenEvent {
        kind,
        at,
        attribute,
    }
}

fn company_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    for i in 0..2 + rng.below(2) {
        let syllable = *rng.pick(SYLLABLES);
        if i == 0 {
            let mut chars = syllable.chars();
            if let Some(first) = chars.next() {
                name.extend(first.to_uppercase());
                name.push_str(chars.as_str());
            }
        } else {
            name.push_str(syllable);
        }
    }
    let suffix = *rng.pick(&[" AS", " ApS", " B.V.", " sp. z o.o.", " AB", " GmbH", ""]);
    let _ = write!(name, "{suffix}");
    name
}

fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.unit() * (hi.ln() - lo.ln())).exp()
}

fn ascii_lower(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ś' => 's',
            'ń' => 'n',
            'ł' => 'l',
            'ą' => 'a',
            'ę' => 'e',
            'ó' => 'o',
            'ż' | 'ź' => 'z',
            'ć' => 'c',
            'ø' => 'o',
            'å' | 'æ' => 'a',
            ' ' => '-',
            other => other.to_ascii_lowercase(),
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}
