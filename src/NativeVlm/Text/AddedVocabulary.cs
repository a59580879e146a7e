using System.Globalization;
using System.Text;

namespace NativeVlm.Text;

/// <summary>
/// Splits added tokens out of a text the way Hugging Face's AddedVocabulary does: first the tokens that
/// are not normalized, found in the raw text; then, in each remaining piece after normalization, the
/// normalized ones (matched by their normalized content). At each position the longest token wins
/// (Aho-Corasick leftmost-longest); single_word, lstrip and rstrip are applied to each match.
/// </summary>
internal sealed class AddedVocabulary
{
    /// <summary>One piece of the text: an added token's id, or text still to be tokenized.</summary>
    public readonly record struct Segment(string Text, int? TokenId);

    private readonly Matcher _raw;
    private readonly Matcher _normalized;
    private readonly Func<string, string> _normalize;

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, Func<string, string> normalize)
    {
        _raw = new Matcher(tokens.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalized = new Matcher(tokens.Where(t => t.Normalized).Select(t => (normalize(t.Content), t)));
        _normalize = normalize;
    }

    /// <summary>The text as added-token ids and normalized pieces between them, in order.</summary>
    public List<Segment> Split(string text)
    {
        var segments = new List<Segment>();
        foreach (Segment raw in _raw.Split(text))
        {
            if (raw.TokenId is not null)
            {
                segments.Add(raw);
                continue;
            }
            segments.AddRange(_normalized.Split(_normalize(raw.Text)));
        }
        return segments;
    }

    private sealed class Matcher
    {
        /// <summary>Candidates by first character, longest first.</summary>
        private readonly Dictionary<char, List<(string Pattern, AddedToken Token)>> _byFirstChar;

        public Matcher(IEnumerable<(string Pattern, AddedToken Token)> patterns) =>
            _byFirstChar = patterns
                .Where(p => p.Pattern.Length > 0)
                .GroupBy(p => p.Pattern[0])
                .ToDictionary(g => g.Key, g => g.OrderByDescending(p => p.Pattern.Length).ToList());

        /// <summary>The pieces of <paramref name="text"/> in order, empty ones left out.</summary>
        public List<Segment> Split(string text)
        {
            var segments = new List<Segment>();
            int pieceStart = 0;
            int searchFrom = 0;
            while (NextMatch(text, searchFrom) is (int matchStart, int matchEnd, AddedToken token))
            {
                searchFrom = matchEnd;
                if (token.SingleWord && !IsSingleWord(text, matchStart, matchEnd))
                {
                    continue;
                }
                int start = token.LStrip ? Math.Max(StartOfTrailingWhitespace(text, matchStart), pieceStart) : matchStart;
                int stop = token.RStrip ? EndOfLeadingWhitespace(text, matchEnd) : matchEnd;
                if (pieceStart < start)
                {
                    segments.Add(new Segment(text[pieceStart..start], null));
                }
                segments.Add(new Segment(text[start..stop], token.Id));
                pieceStart = stop;
            }
            if (pieceStart < text.Length)
            {
                segments.Add(new Segment(text[pieceStart..], null));
            }
            return segments;
        }

        private (int Start, int End, AddedToken Token)? NextMatch(string text, int from)
        {
            for (int i = from; i < text.Length; i++)
            {
                if (!_byFirstChar.TryGetValue(text[i], out List<(string Pattern, AddedToken Token)>? candidates))
                {
                    continue;
                }
                foreach ((string pattern, AddedToken token) in candidates)
                {
                    if (text.AsSpan(i).StartsWith(pattern, StringComparison.Ordinal))
                    {
                        return (i, i + pattern.Length, token);
                    }
                }
            }
            return null;
        }
    }

    /// <summary>HF's single_word test: no word character (Rust regex <c>\w</c>) right before or right after.</summary>
    private static bool IsSingleWord(string text, int start, int end) =>
        (start == 0 || !IsWordCharacter(Rune.GetRuneAt(text, PreviousRuneStart(text, start))))
        && (end == text.Length || !IsWordCharacter(Rune.GetRuneAt(text, end)));

    private static int PreviousRuneStart(string text, int index) =>
        index >= 2 && char.IsLowSurrogate(text[index - 1]) && char.IsHighSurrogate(text[index - 2]) ? index - 2 : index - 1;

    /// <summary>
    /// Rust regex's Unicode <c>\w</c>: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control.
    /// Alphabetic is the letters, Nl and Other_Alphabetic, whose members outside the marks are the
    /// circled and squared Latin letters listed here.
    /// </summary>
    private static bool IsWordCharacter(Rune rune)
    {
        int c = rune.Value;
        if (c is 0x200C or 0x200D or >= 0x24B6 and <= 0x24E9 or >= 0x1F130 and <= 0x1F149
            or >= 0x1F150 and <= 0x1F169 or >= 0x1F170 and <= 0x1F189)
        {
            return true;
        }
        UnicodeCategory category = Rune.GetUnicodeCategory(rune);
        return CodePointSet.Letters.Contains(category) || CodePointSet.Marks.Contains(category)
            || category is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.ConnectorPunctuation;
    }

    private static int StartOfTrailingWhitespace(string text, int end)
    {
        int start = end;
        while (start > 0)
        {
            int previous = PreviousRuneStart(text, start);
            if (!Rune.IsWhiteSpace(Rune.GetRuneAt(text, previous)))
            {
                break;
            }
            start = previous;
        }
        return start;
    }

    private static int EndOfLeadingWhitespace(string text, int start)
    {
        int end = start;
        while (end < text.Length && Rune.GetRuneAt(text, end) is Rune rune && Rune.IsWhiteSpace(rune))
        {
            end += rune.Utf16SequenceLength;
        }
        return end;
    }
}
