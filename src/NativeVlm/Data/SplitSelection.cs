using System.Globalization;
using System.Text.RegularExpressions;

namespace NativeVlm.Data;

/// <summary>How a percent boundary becomes a row index (datasets' ReadInstruction rounding).</summary>
public enum PercentRounding
{
    /// <summary><c>round(boundary × rows / 100)</c>, halves to even as Python's round does; the default.</summary>
    Closest,

    /// <summary><c>boundary × trunc(rows / 100)</c>, so that 5% is always 5 × 1%; needs 100 rows or more.</summary>
    Pct1DropRemainder,
}

/// <summary>
/// One part of a split specification: a split name and an optional slice, in rows or in percent:
/// <c>train</c>, <c>train[10:20]</c>, <c>train[:6%]</c>, <c>test[-5%:](pct1_dropremainder)</c>.
/// Boundaries are Python slice boundaries: negative ones count from the end, and out-of-range ones clamp.
/// </summary>
public sealed record SplitSlice(string Split, long? From, long? To, bool InPercent, PercentRounding? Rounding)
{
    /// <summary>
    /// The rows [start, end) of a split of <paramref name="rowCount"/> rows that this slice selects,
    /// computed as datasets' <c>_rel_to_abs_instr</c> does; start ≥ end selects nothing.
    /// </summary>
    public (long Start, long End) Resolve(long rowCount)
    {
        long from;
        long to;
        if (InPercent)
        {
            from = From is null ? 0 : PercentToRows(From.Value, rowCount);
            to = To is null ? rowCount : PercentToRows(To.Value, rowCount);
        }
        else
        {
            from = From ?? 0;
            to = To ?? rowCount;
        }
        if (from < 0)
        {
            from = Math.Max(rowCount + from, 0);
        }
        if (to < 0)
        {
            to = Math.Max(rowCount + to, 0);
        }
        return (Math.Min(from, rowCount), Math.Min(to, rowCount));
    }

    private long PercentToRows(long boundary, long rowCount)
    {
        if (Rounding == PercentRounding.Pct1DropRemainder)
        {
            if (rowCount < 100)
            {
                throw new ArgumentException(
                    $"'{this}': pct1_dropremainder rounding on a split of {rowCount} rows (fewer than 100) always selects nothing");
            }
            return boundary * (long)Math.Truncate(rowCount / 100.0);
        }
        // Python: int(round(boundary * num_examples / 100.0)), a float division rounded half to even.
        return (long)Math.Round(boundary * rowCount / 100.0, MidpointRounding.ToEven);
    }

    public override string ToString()
    {
        if (From is null && To is null)
        {
            return Split;
        }
        string unit = InPercent ? "%" : "";
        string rounding = Rounding == PercentRounding.Pct1DropRemainder ? "(pct1_dropremainder)" : "";
        return $"{Split}[{From}{(From is null ? "" : unit)}:{To}{(To is null ? "" : unit)}]{rounding}";
    }
}

/// <summary>
/// A split specification as <c>load_dataset(split=...)</c> takes it: slices joined by <c>+</c>, read
/// one after the other (<c>train[:10%]+test</c>). The grammar, the checks and the rounding are those
/// of datasets' <c>ReadInstruction.from_spec</c>.
/// </summary>
public sealed partial class SplitSelection
{
    private SplitSelection(string spec, IReadOnlyList<SplitSlice> slices)
    {
        Spec = spec;
        Slices = slices;
    }

    /// <summary>The text it was parsed from.</summary>
    public string Spec { get; }

    public IReadOnlyList<SplitSlice> Slices { get; }

    public override string ToString() => Spec;

    /// <exception cref="ArgumentException">The spec does not parse, or breaks one of datasets' rules.</exception>
    public static SplitSelection Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var slices = AdditionSeparator().Split(spec).Select(part => ParseSlice(spec, part)).ToList();
        // datasets compares every later percent slice with the first one only, and only when that one is in percent.
        SplitSlice first = slices[0];
        foreach (SplitSlice slice in slices.Skip(1))
        {
            if (first.InPercent && slice.InPercent && first.Rounding != slice.Rounding)
            {
                throw new ArgumentException($"split '{spec}': percent slices with different roundings cannot be added ('{first}' and '{slice}')");
            }
        }
        return new SplitSelection(spec, slices);
    }

    private static SplitSlice ParseSlice(string spec, string part)
    {
        Match match = SliceSyntax().Match(part);
        if (!match.Success)
        {
            throw new ArgumentException(
                $"split '{spec}': '{part}' is not of the form name, name[from:to] or name[from%:to%](rounding)");
        }
        // One '%' on either boundary makes both boundaries percentages, as in datasets.
        bool inPercent = match.Groups["fromPercent"].Success || match.Groups["toPercent"].Success;
        long? from = ParseBoundary(spec, match.Groups["from"]);
        long? to = ParseBoundary(spec, match.Groups["to"]);
        PercentRounding? rounding = null;
        if (match.Groups["rounding"].Success)
        {
            rounding = match.Groups["rounding"].Value switch
            {
                "closest" => PercentRounding.Closest,
                "pct1_dropremainder" => PercentRounding.Pct1DropRemainder,
                string other => throw new ArgumentException(
                    $"split '{spec}': rounding '{other}' is neither closest nor pct1_dropremainder"),
            };
            if (!inPercent)
            {
                throw new ArgumentException($"split '{spec}': '{part}' gives a rounding, which only percent slices take");
            }
        }
        if (inPercent)
        {
            if (Math.Abs(from ?? 0) > 100 || Math.Abs(to ?? 0) > 100)
            {
                throw new ArgumentException($"split '{spec}': percent boundaries of '{part}' must lie in [-100, 100]");
            }
            rounding ??= PercentRounding.Closest;
        }
        return new SplitSlice(match.Groups["split"].Value, from, to, inPercent, rounding);
    }

    private static long? ParseBoundary(string spec, Group group)
    {
        if (!group.Success)
        {
            return null;
        }
        return long.TryParse(group.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw new ArgumentException($"split '{spec}': boundary {group.Value} is out of range");
    }

    [GeneratedRegex(@"\s*\+\s*")]
    private static partial Regex AdditionSeparator();

    /// <summary>datasets' _SUB_SPEC_RE, with its split-name pattern <c>\w+(\.\w+)*</c>.</summary>
    [GeneratedRegex(@"^(?<split>\w+(\.\w+)*)(\[((?<from>-?[0-9]+)(?<fromPercent>%)?)?:((?<to>-?[0-9]+)(?<toPercent>%)?)?\])?(\((?<rounding>[^)]*)\))?$")]
    private static partial Regex SliceSyntax();
}
