//! Shell-style glob matching, one implementation for every side: kernel module aliases
//! (`modules.alias` patterns) and `ld.so.conf` include patterns.

/// Shell-style glob match (`*`, `?`, `[...]` with ranges and `!`/`^`
/// negation, `\` escapes), like `fnmatch(3)` without flags.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position after the last `*` and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if let Some(next) = match_one(&p, pi, t[ti]) {
            pi = next;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            pi += 1;
            star = Some((pi, ti));
        } else if let Some((sp, st)) = star {
            pi = sp;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches the single pattern element at `p[pi]` (not `*`) against `c`;
/// returns the index after the element on a match.
fn match_one(p: &[char], pi: usize, c: char) -> Option<usize> {
    match p.get(pi)? {
        '*' => None,
        '?' => Some(pi + 1),
        '[' => match match_bracket(p, pi, c) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            // An unterminated bracket matches a literal `[`.
            None => (c == '[').then_some(pi + 1),
        },
        '\\' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(pi + 2),
        &lit => (lit == c).then_some(pi + 1),
    }
}

/// Evaluates the bracket expression starting at `p[start] == '['` against `c`;
/// returns whether it matched and the index after `]`, or `None` when unterminated.
fn match_bracket(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_handles_star_question_and_brackets() {
        assert!(fnmatch("pci:v*d*sv*", "pci:v00001AF4d00001001sv00001AF4"));
        assert!(fnmatch("a*b*c", "aXXbYYbZc"));
        assert!(!fnmatch("a*b*c", "aXXbYYbZ"));
        assert!(fnmatch("?x?", "axb"));
        assert!(!fnmatch("?x?", "axbb"));
        assert!(fnmatch("[a-c]1", "b1"));
        assert!(!fnmatch("[a-c]1", "d1"));
        assert!(fnmatch("[!a-c]1", "d1"));
        assert!(fnmatch("[^a-c]1", "d1"));
        assert!(!fnmatch("[!a-c]1", "a1"));
        assert!(fnmatch("[]x]", "]"));
        assert!(fnmatch("a[-]b", "a-b"));
        assert!(fnmatch("\\*", "*"));
        assert!(!fnmatch("\\*", "x"));
        assert!(fnmatch("[", "["));
        assert!(fnmatch("*", ""));
        assert!(!fnmatch("", "a"));
    }
}
