using System.Buffers;
using System.Text;

namespace NativeVlm.Text.Jinja;

/// <summary>
/// Python str semantics that chat templates rely on: indexing and length by code point, str.isspace's
/// whitespace, strip/split/startswith. Case mappings use .NET's invariant simple mappings, which agree
/// with Python's for all but a few special cases (ß.upper() is "SS" in Python).
/// </summary>
internal static class PyString
{
    /// <summary>Python's str.isspace: the Unicode White_Space characters plus the separators U+001C-U+001F.</summary>
    public static readonly SearchValues<char> Whitespace = SearchValues.Create(
        "\t\n\v\f\r\u001C\u001D\u001E\u001F \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000");

    public static bool IsSpace(char c) => Whitespace.Contains(c);

    /// <summary>The code points of <paramref name="text"/>, each as a string (Python's str indexing unit).</summary>
    public static List<string> CodePoints(string text)
    {
        var points = new List<string>(text.Length);
        foreach (Rune rune in text.EnumerateRunes())
        {
            points.Add(rune.ToString());
        }
        return points;
    }

    public static int Length(string text)
    {
        int count = 0;
        foreach (Rune _ in text.EnumerateRunes())
        {
            count++;
        }
        return count;
    }

    /// <summary>str.strip / lstrip / rstrip: whitespace when <paramref name="chars"/> is null, else any of its code points.</summary>
    public static string Strip(string text, string? chars, bool left, bool right)
    {
        HashSet<int>? set = chars is null ? null : chars.EnumerateRunes().Select(r => r.Value).ToHashSet();
        bool Strippable(Rune r) => set is null ? r.IsBmp && IsSpace((char)r.Value) : set.Contains(r.Value);
        int start = 0, end = text.Length;
        while (left && start < end && Strippable(Rune.GetRuneAt(text, start)))
        {
            start += Rune.GetRuneAt(text, start).Utf16SequenceLength;
        }
        while (right && end > start && Rune.TryGetRuneAt(text, end - (end >= 2 && char.IsLowSurrogate(text[end - 1]) ? 2 : 1), out Rune last) && Strippable(last))
        {
            end -= last.Utf16SequenceLength;
        }
        return text[start..end];
    }

    public static string RStrip(string text) => Strip(text, null, left: false, right: true);

    /// <summary>str.split: on runs of whitespace (no empty pieces) when <paramref name="separator"/> is null, else on it exactly.</summary>
    public static List<object?> Split(string text, string? separator, int maxSplit)
    {
        var pieces = new List<object?>();
        if (separator is null)
        {
            int i = 0;
            while (true)
            {
                while (i < text.Length && IsSpace(text[i]))
                {
                    i++;
                }
                if (i >= text.Length)
                {
                    return pieces;
                }
                if (maxSplit >= 0 && pieces.Count == maxSplit)
                {
                    pieces.Add(text[i..]);
                    return pieces;
                }
                int start = i;
                while (i < text.Length && !IsSpace(text[i]))
                {
                    i++;
                }
                pieces.Add(text[start..i]);
            }
        }
        if (separator.Length == 0)
        {
            throw new ArgumentException("empty separator");
        }
        int from = 0;
        for (int at = text.IndexOf(separator, StringComparison.Ordinal);
             at >= 0 && (maxSplit < 0 || pieces.Count < maxSplit);
             at = text.IndexOf(separator, from, StringComparison.Ordinal))
        {
            pieces.Add(text[from..at]);
            from = at + separator.Length;
        }
        pieces.Add(text[from..]);
        return pieces;
    }

    /// <summary>str.capitalize: the first code point upper-cased, the rest lower-cased.</summary>
    public static string Capitalize(string text)
    {
        if (text.Length == 0)
        {
            return text;
        }
        Rune first = Rune.GetRuneAt(text, 0);
        return Rune.ToUpperInvariant(first) + text[first.Utf16SequenceLength..].ToLowerInvariant();
    }

    /// <summary>Jinja's title filter: each piece after a run of "-", whitespace, "(", "{", "[", "&lt;" capitalized.</summary>
    public static string Title(string text)
    {
        var result = new StringBuilder(text.Length);
        bool atWordStart = true;
        foreach (Rune rune in text.EnumerateRunes())
        {
            bool boundary = rune.Value is '-' or '(' or '{' or '[' or '<' || (rune.IsBmp && IsSpace((char)rune.Value));
            result.Append(boundary ? rune.ToString() : atWordStart ? Rune.ToUpperInvariant(rune).ToString() : Rune.ToLowerInvariant(rune).ToString());
            atWordStart = boundary;
        }
        return result.ToString();
    }
}
