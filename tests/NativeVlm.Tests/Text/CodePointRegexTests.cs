using System.Text.RegularExpressions;
using NativeVlm.Text;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// The pre-tokenizer regex engine: Oniguruma's matching over code points for the patterns tokenizer.json
/// files carry, and a named error for constructs outside the subset.
/// </summary>
public class CodePointRegexTests
{
    private const string Qwen = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static string[] Pieces(string pattern, string text) =>
        new CodePointRegex(pattern).Matches(text).Select(m => text.Substring(m.Start, m.Length)).ToArray();

    /// <summary>𠮷 and 𝐀 are letters and 𝟎 a digit, each one code point of two UTF-16 units.</summary>
    [Fact]
    public void Astral_letters_and_digits_are_classified_by_code_point()
    {
        string text = "a\U00020BB7\U0001D400 \U0001D7CE\U0001D7CF!";
        string[] expected = ["a\U00020BB7\U0001D400", " ", "\U0001D7CE", "\U0001D7CF", "!"];

        Assert.Equal(expected, Pieces(Qwen, text));
        // .NET's Regex sees surrogates (category Cs), neither letters nor digits: the pitfall this engine avoids.
        Assert.NotEqual(expected, Regex.Matches(text, Qwen).Select(m => m.Value).ToArray());
    }

    [Fact]
    public void The_qwen_pattern_splits_contractions_words_digits_punctuation_and_whitespace()
    {
        Assert.Equal(["I", "'M", " fine", ",", " ", "1", "2", "  ", " ok", "!\n\n", "  \n", "\tx", "   "],
            Pieces(Qwen, "I'M fine, 12   ok!\n\n  \n\tx   "));
    }

    /// <summary>Unicode case folding maps U+017F (long s) to 's': Oniguruma's (?i) matches it.</summary>
    [Fact]
    public void A_case_insensitive_group_folds_ascii_letters_as_unicode_does()
    {
        Assert.Equal(["'s", "'S", "'\u017F"], Pieces("(?i:'s)", "'s'S'\u017F't"));
        Assert.Equal(["'\u212A"], Pieces("(?i:'k)", "'\u212A"));
    }

    [Fact]
    public void Quantifiers_intervals_classes_and_lookahead()
    {
        Assert.Equal(["123", "45"], Pieces(@"\p{N}{1,3}", "12345"));
        Assert.Equal(["ab", "ab"], Pieces("ab{1,}?", "abab"));
        Assert.Equal(["a", "a"], Pieces("a+?", "aa"));
        Assert.Equal(["x-", "z"], Pieces(@"[x-z][\-]?", "x-z"));
        Assert.Equal(["  "], Pieces(@"\s+(?!\S)", "   a"));
        Assert.Equal(["a"], Pieces(@"a(?=b)", "acab"));
        Assert.Equal(["\u00E9", "1"], Pieces(@"\w", "\u00E9 1"));
        Assert.Equal(["A", "\u00C9"], Pieces(@"\p{Lu}", "aA\u00C9"));
        Assert.Equal([".", "\t"], Pieces(@"[^\w ]|\x09", ". \t"));
    }

    public static TheoryData<string, string> Unsupported => new()
    {
        { @"\bword", @"the escape \b" },
        { "(?<name>x)", "a group kind other than" },
        { "a*+", "a possessive or stacked quantifier" },
        { "^a", "'^' outside a literal escape" },
        { "[[:alpha:]]", "a nested class" },
        { @"\p{Greek}", @"the property \p{Greek}" },
        { "(?i:[a-z])", "a character class in a case-insensitive group" },
        { "(?i:\u00E9)", "the non-ASCII literal U+00E9" },
        { "a*", "can match the empty string" },
        { "(a|b", "expected ')'" },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public void A_construct_outside_the_subset_is_an_error_naming_it(string pattern, string detail)
    {
        FormatException e = Assert.Throws<FormatException>(() => new CodePointRegex(pattern));
        Assert.Contains(detail, e.Message);
        Assert.Contains($"/{pattern}/", e.Message);
    }
}
