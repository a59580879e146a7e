using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>Context.Range: nvlm_range_push/pop through the bindings, on every backend.</summary>
public class ProfileRangeTests
{
    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Nested_ranges_push_and_pop_around_work_on_the_context(string backend)
    {
        using Context ctx = Backends.Open(backend);

        using (ctx.Range("outer"))
        {
            using (ctx.Range("text.layers.0"))
            {
                using Tensor x = Tensor.FromArray(ctx, new float[] { 1, 2, 3 }, 3);
                Assert.Equal(new float[] { 1, 2, 3 }, x.ToFloatArray());
            }
        }
        ctx.Synchronize();
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Range_pops_when_the_block_throws(string backend)
    {
        using Context ctx = Backends.Open(backend);

        void ThrowInsideRange()
        {
            using (ctx.Range("vision.layers.0"))
            {
                throw new InvalidOperationException("inside the range");
            }
        }

        Assert.Throws<InvalidOperationException>(ThrowInsideRange);
        // The range above is closed, so a new one nests at the top level again.
        using (ctx.Range("connector"))
        {
        }
        ctx.Synchronize();
    }

    [Fact]
    public void Default_range_disposes_without_touching_a_context()
    {
        default(ProfileRange).Dispose();
    }
}
