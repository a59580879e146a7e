using System.Text;

namespace NativeVlm.Text;

/// <summary>
/// One step of tokenizer.json's pre_tokenizer: it splits each piece of text into smaller pieces (a
/// Sequence runs its steps one after the other over all pieces). Empty pieces are dropped, as in
/// Hugging Face's PreTokenizedString.
/// </summary>
internal abstract class PreTokenizerStep
{
    public abstract void Split(string piece, List<string> output);

    /// <summary>How HF's Split keeps the delimiters it finds (SplitDelimiterBehavior).</summary>
    public enum Behavior
    {
        Removed,
        Isolated,
        MergedWithPrevious,
        MergedWithNext,
        Contiguous,
    }

    /// <summary>
    /// Cuts <paramref name="piece"/> at the given spans (a cover of the whole piece, in order, each
    /// flagged as a delimiter match or not) the way HF's NormalizedString::split does for each behavior.
    /// </summary>
    protected static void Cut(string piece, List<(int Start, int End, bool IsMatch)> spans, Behavior behavior, List<string> output)
    {
        var pieces = new List<(int Start, int End)>();
        bool previousMatch = false;
        if (behavior == Behavior.MergedWithNext)
        {
            for (int i = spans.Count - 1; i >= 0; i--)
            {
                (int start, int end, bool isMatch) = spans[i];
                if (isMatch && !previousMatch && pieces.Count > 0)
                {
                    pieces[^1] = (start, pieces[^1].End);
                }
                else
                {
                    pieces.Add((start, end));
                }
                previousMatch = isMatch;
            }
            pieces.Reverse();
        }
        else
        {
            foreach ((int start, int end, bool isMatch) in spans)
            {
                bool merge = behavior switch
                {
                    Behavior.MergedWithPrevious => isMatch && !previousMatch,
                    Behavior.Contiguous => isMatch == previousMatch,
                    _ => false,
                };
                if (behavior == Behavior.Removed && isMatch)
                {
                    previousMatch = isMatch;
                    continue;
                }
                if (merge && pieces.Count > 0)
                {
                    pieces[^1] = (pieces[^1].Start, end);
                }
                else
                {
                    pieces.Add((start, end));
                }
                previousMatch = isMatch;
            }
        }
        foreach ((int start, int end) in pieces)
        {
            if (end > start)
            {
                output.Add(piece[start..end]);
            }
        }
    }

    /// <summary>The cover of <paramref name="piece"/> by the matches and the text between them.</summary>
    protected static List<(int Start, int End, bool IsMatch)> Cover(string piece, IEnumerable<(int Start, int Length)> matches, bool invert)
    {
        var spans = new List<(int, int, bool)>();
        int previous = 0;
        foreach ((int start, int length) in matches)
        {
            if (start > previous)
            {
                spans.Add((previous, start, invert));
            }
            spans.Add((start, start + length, !invert));
            previous = start + length;
        }
        if (previous < piece.Length)
        {
            spans.Add((previous, piece.Length, invert));
        }
        return spans;
    }
}

/// <summary>tokenizer.json's Split: a regex (matched over code points) or a literal string, with a delimiter behavior.</summary>
internal sealed class SplitStep : PreTokenizerStep
{
    private readonly CodePointRegex? _regex;
    private readonly string? _literal;
    private readonly Behavior _behavior;
    private readonly bool _invert;

    public SplitStep(CodePointRegex regex, Behavior behavior, bool invert) => (_regex, _behavior, _invert) = (regex, behavior, invert);

    public SplitStep(string literal, Behavior behavior, bool invert) => (_literal, _behavior, _invert) = (literal, behavior, invert);

    public override void Split(string piece, List<string> output) =>
        Cut(piece, Cover(piece, _regex?.Matches(piece) ?? LiteralMatches(piece), _invert), _behavior, output);

    private IEnumerable<(int Start, int Length)> LiteralMatches(string piece)
    {
        if (_literal!.Length == 0)
        {
            yield break;
        }
        for (int at = piece.IndexOf(_literal, StringComparison.Ordinal); at >= 0; at = piece.IndexOf(_literal, at + _literal.Length, StringComparison.Ordinal))
        {
            yield return (at, _literal.Length);
        }
    }
}

/// <summary>tokenizer.json's Digits: every numeric code point (Rust's char::is_numeric, i.e. \p{N}) on its own, or runs of them.</summary>
internal sealed class DigitsStep(bool individualDigits) : PreTokenizerStep
{
    public override void Split(string piece, List<string> output)
    {
        var digits = new List<(int Start, int Length)>();
        for (int i = 0; i < piece.Length;)
        {
            Rune rune = Rune.GetRuneAt(piece, i);
            if (CodePointSet.Numbers.Contains(Rune.GetUnicodeCategory(rune)))
            {
                digits.Add((i, rune.Utf16SequenceLength));
            }
            i += rune.Utf16SequenceLength;
        }
        Cut(piece, Cover(piece, digits, invert: false), individualDigits ? Behavior.Isolated : Behavior.Contiguous, output);
    }
}

/// <summary>
/// tokenizer.json's ByteLevel pre-tokenizer: an optional space before each piece that lacks one,
/// optionally GPT-2's split regex, then every piece rewritten in the byte-level alphabet (so that any
/// step after it sees what HF's sees).
/// </summary>
internal sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : PreTokenizerStep
{
    private static readonly CodePointRegex Gpt2Pattern =
        new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+");

    public override void Split(string piece, List<string> output)
    {
        if (addPrefixSpace && !piece.StartsWith(' '))
        {
            piece = " " + piece;
        }
        var pieces = new List<string>();
        if (useRegex)
        {
            Cut(piece, Cover(piece, Gpt2Pattern.Matches(piece), invert: false), Behavior.Isolated, pieces);
        }
        else
        {
            pieces.Add(piece);
        }
        output.AddRange(pieces.Select(ByteLevelAlphabet.Encode));
    }
}
