//! The kernel command line as words: shared by the init's parameter parser and by
//! `anemos kexec`, which builds the command line of the kernel it boots.

/// Splits a command line into words the way the kernel does: whitespace separates, double
/// quotes group (and are removed).
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut has = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                has = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(split_words(r#"a  b="c d" e"#), ["a", "b=c d", "e"]);
        assert_eq!(split_words("  "), Vec::<String>::new());
        assert_eq!(split_words(r#"x="""#), ["x="]);
    }
}
