//! The Pardot grade ladder (F … A+) and the thirds-of-a-letter steps that
//! move a grade along it.
//!
//! Pure value types: no IO, nothing here can fail at run time. Parsing a
//! grade or a step from model text is the only fallible operation and it
//! happens while the model is compiled.

use std::fmt;

/// One rung of the 13-step ladder `F, D-, D, D+, C-, C, C+, B-, B, B+, A-, A, A+`.
///
/// Stored as its position on the ladder so that comparisons and steps are
/// integer arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grade(u8);

const LADDER: [&str; 13] = [
    "F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+",
];

impl Grade {
    /// The lowest grade; also what a disqualifier forces.
    pub const F: Grade = Grade(0);
    /// Pardot's default start grade.
    pub const D: Grade = Grade(2);
    /// The highest grade.
    pub const A_PLUS: Grade = Grade(12);

    /// Every grade, lowest first.
    pub fn ladder() -> impl Iterator<Item = Grade> {
        (0..LADDER.len() as u8).map(Grade)
    }

    /// Parses `"B+"` and friends (case-insensitive; `"a+"` is accepted).
    pub fn parse(text: &str) -> Option<Grade> {
        let wanted = text.trim();
        LADDER
            .iter()
            .position(|g| g.eq_ignore_ascii_case(wanted))
            .map(|i| Grade(i as u8))
    }

    /// The grade `thirds` thirds of a letter away, clamped at F and A+.
    pub fn moved(self, thirds: i32) -> Grade {
        let index = (i32::from(self.0) + thirds).clamp(0, LADDER.len() as i32 - 1);
        Grade(index as u8)
    }

    /// Position on the ladder, 0 for F up to 12 for A+.
    pub fn rank(self) -> u8 {
        self.0
    }

    pub fn as_str(self) -> &'static str {
        LADDER[usize::from(self.0)]
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Grade {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How far a grading criterion moves the grade: a signed number of thirds
/// of a letter, one of ±1/3, ±2/3 or ±1 letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradeStep(i8);

impl GradeStep {
    /// The written forms revops may use in a model file.
    pub const ACCEPTED: &'static str = "\"+1/3\", \"+2/3\", \"+1\", \"-1/3\", \"-2/3\" or \"-1\"";

    pub fn parse(text: &str) -> Option<GradeStep> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let thirds = match compact.as_str() {
            "+1/3" | "1/3" => 1,
            "+2/3" | "2/3" => 2,
            "+1" | "1" | "+3/3" => 3,
            "-1/3" => -1,
            "-2/3" => -2,
            "-1" | "-3/3" => -3,
            _ => return None,
        };
        Some(GradeStep(thirds))
    }

    pub fn thirds(self) -> i32 {
        i32::from(self.0)
    }
}

impl fmt::Display for GradeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self.0 {
            1 => "+1/3",
            2 => "+2/3",
            3 => "+1",
            -1 => "-1/3",
            -2 => "-2/3",
            -3 => "-1",
            _ => "0",
        };
        f.write_str(text)
    }
}
