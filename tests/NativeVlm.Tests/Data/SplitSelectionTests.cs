using NativeVlm.Data;
using Xunit;

namespace NativeVlm.Tests.Data;

/// <summary>
/// Split specifications resolve to the rows datasets' ReadInstruction selects: percent boundaries
/// rounded to the closest row with halves to even (Python's round), or pct1_dropremainder; negative
/// boundaries from the end; out-of-range ones clamped.
/// </summary>
public class SplitSelectionTests
{
    [Theory]
    [InlineData("train", 1000, 0, 1000)]
    [InlineData("train[:6%]", 1000, 0, 60)]
    [InlineData("train[10:20]", 1000, 10, 20)]
    [InlineData("train[50%:]", 1000, 500, 1000)]
    [InlineData("train[:6%]", 12, 0, 1)] // 0.72 → 1
    [InlineData("train[:50%]", 5, 0, 2)] // 2.5 → 2 (half to even)
    [InlineData("train[:50%]", 7, 0, 4)] // 3.5 → 4 (half to even)
    [InlineData("train[:50%]", 3, 0, 2)] // 1.5 → 2
    [InlineData("train[:10%]", 25, 0, 2)] // 2.5 → 2
    [InlineData("train[:30%]", 25, 0, 8)] // 7.5 → 8
    [InlineData("train[-10%:]", 25, 23, 25)] // -2.5 → -2
    [InlineData("train[:-25%]", 12, 0, 9)]
    [InlineData("train[-3:]", 12, 9, 12)]
    [InlineData("train[:-3]", 12, 0, 9)]
    [InlineData("train[:2000]", 12, 0, 12)]
    [InlineData("train[-2000:]", 12, 0, 12)]
    [InlineData("train[20:]", 12, 12, 12)]
    [InlineData("train[10:50%]", 12, 1, 6)] // one '%' makes both boundaries percentages: 1.2 → 1
    [InlineData("train[-100%:100%]", 12, 0, 12)]
    [InlineData("train[:6%](closest)", 1000, 0, 60)]
    [InlineData("train[:6%](pct1_dropremainder)", 250, 0, 12)] // 6 × trunc(2.5)
    [InlineData("train[-5%:](pct1_dropremainder)", 250, 240, 250)]
    [InlineData("validation.extra_1", 4, 0, 4)]
    public void A_slice_resolves_to_the_rows_datasets_selects(string spec, long rowCount, long start, long end)
    {
        SplitSlice slice = Assert.Single(SplitSelection.Parse(spec).Slices);

        Assert.Equal((start, end), slice.Resolve(rowCount));
    }

    [Fact]
    public void Slices_joined_by_plus_are_read_in_order()
    {
        SplitSelection selection = SplitSelection.Parse("test[:10%] + train[1:-1]+validation");

        Assert.Equal(
            [
                new SplitSlice("test", null, 10, InPercent: true, PercentRounding.Closest),
                new SplitSlice("train", 1, -1, InPercent: false, null),
                new SplitSlice("validation", null, null, InPercent: false, null),
            ],
            selection.Slices);
        Assert.Equal("test[:10%]", selection.Slices[0].ToString());
        Assert.Equal("train[1:-1]", selection.Slices[1].ToString());
    }

    [Theory]
    [InlineData("train[:10]+test[:5%]+validation[:5%](pct1_dropremainder)", 3)] // the first slice is not in percent
    [InlineData("train[:5%]+test[:10]+validation[:5%]", 3)]
    public void Roundings_are_compared_with_the_first_slice_only_and_only_between_percent_slices(string spec, int sliceCount)
    {
        Assert.Equal(sliceCount, SplitSelection.Parse(spec).Slices.Count);
    }

    [Theory]
    [InlineData("train[:5%]+test[:5%](pct1_dropremainder)", "percent slices with different roundings cannot be added")]
    [InlineData("train[::2]", "is not of the form")]
    [InlineData("train[1.5:]", "is not of the form")]
    [InlineData("train/test", "is not of the form")]
    [InlineData("train+", "'' is not of the form")]
    [InlineData("train[:101%]", "must lie in [-100, 100]")]
    [InlineData("train[-101%:]", "must lie in [-100, 100]")]
    [InlineData("train[:10](closest)", "only percent slices take")]
    [InlineData("train(closest)", "only percent slices take")]
    [InlineData("train[:10%](nearest)", "rounding 'nearest' is neither closest nor pct1_dropremainder")]
    [InlineData("train[:10%]()", "rounding '' is neither")]
    [InlineData("train[99999999999999999999:]", "boundary 99999999999999999999 is out of range")]
    public void A_spec_datasets_rejects_is_rejected(string spec, string detail)
    {
        var e = Assert.Throws<ArgumentException>(() => SplitSelection.Parse(spec));

        Assert.StartsWith($"split '{spec}': ", e.Message);
        Assert.Contains(detail, e.Message);
    }

    [Fact]
    public void Pct1_dropremainder_needs_a_hundred_rows()
    {
        SplitSlice slice = SplitSelection.Parse("train[:50%](pct1_dropremainder)").Slices[0];

        var e = Assert.Throws<ArgumentException>(() => slice.Resolve(99));

        Assert.Contains("split of 99 rows (fewer than 100) always selects nothing", e.Message);
        Assert.Equal((0L, 50L), slice.Resolve(100));
    }
}
