using System.Globalization;

namespace NativeVlm.Text;

/// <summary>
/// A set of Unicode code points as a regex character class holds it: ranges, general categories and
/// nested classes (<c>[^\s\p{L}]</c>), optionally negated. Tested with the code point's category
/// precomputed, because one position is tested by many alternatives.
/// </summary>
internal sealed class CodePointSet
{
    private readonly List<(int First, int Last)> _ranges = [];
    private readonly List<CodePointSet> _nested = [];
    private uint _categories;

    public bool Negated { get; init; }

    public static CodePointSet Single(int codePoint) => new CodePointSet().AddRange(codePoint, codePoint);

    /// <summary>Oniguruma's <c>\s</c> with Unicode: 0009-000D, 0085 and the Z categories (the White_Space property).</summary>
    public static CodePointSet Whitespace(bool negated = false) =>
        new CodePointSet { Negated = negated }
            .AddRange(0x09, 0x0D)
            .AddRange(0x85, 0x85)
            .AddCategories(UnicodeCategory.SpaceSeparator, UnicodeCategory.LineSeparator, UnicodeCategory.ParagraphSeparator);

    /// <summary>Oniguruma's <c>\d</c> with Unicode: Decimal_Number.</summary>
    public static CodePointSet Digit(bool negated = false) =>
        new CodePointSet { Negated = negated }.AddCategories(UnicodeCategory.DecimalDigitNumber);

    /// <summary>Oniguruma's <c>\w</c> with Unicode: Letter, Mark, Number, Connector_Punctuation.</summary>
    public static CodePointSet Word(bool negated = false) =>
        new CodePointSet { Negated = negated }
            .AddCategories(Letters)
            .AddCategories(Marks)
            .AddCategories(Numbers)
            .AddCategories(UnicodeCategory.ConnectorPunctuation);

    public static readonly UnicodeCategory[] Letters =
    [
        UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter,
        UnicodeCategory.ModifierLetter, UnicodeCategory.OtherLetter,
    ];

    public static readonly UnicodeCategory[] Marks =
        [UnicodeCategory.NonSpacingMark, UnicodeCategory.SpacingCombiningMark, UnicodeCategory.EnclosingMark];

    public static readonly UnicodeCategory[] Numbers =
        [UnicodeCategory.DecimalDigitNumber, UnicodeCategory.LetterNumber, UnicodeCategory.OtherNumber];

    public CodePointSet AddRange(int first, int last)
    {
        _ranges.Add((first, last));
        return this;
    }

    public CodePointSet AddCategories(params UnicodeCategory[] categories)
    {
        foreach (UnicodeCategory category in categories)
        {
            _categories |= 1u << (int)category;
        }
        return this;
    }

    public CodePointSet AddNested(CodePointSet set)
    {
        _nested.Add(set);
        return this;
    }

    public bool Contains(int codePoint, UnicodeCategory category) => ContainsUnnegated(codePoint, category) != Negated;

    private bool ContainsUnnegated(int codePoint, UnicodeCategory category)
    {
        if ((_categories & (1u << (int)category)) != 0)
        {
            return true;
        }
        foreach ((int first, int last) in _ranges)
        {
            if (codePoint >= first && codePoint <= last)
            {
                return true;
            }
        }
        foreach (CodePointSet nested in _nested)
        {
            if (nested.Contains(codePoint, category))
            {
                return true;
            }
        }
        return false;
    }
}
