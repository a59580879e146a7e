using NativeVlm.Autograd;
using NativeVlm.Tensors;
using NativeVlm.Training;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests;

/// <summary>The tape: accumulation, NoGrad, Detach, scopes, and gradient checkpointing.</summary>
public class AutogradTests(ITestOutputHelper output)
{
    private static Tensor Leaf(Context ctx, Random rng, params long[] shape)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        float[] data = Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        Tensor t = Tensor.FromArray(ctx, data, shape);
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void A_tensor_used_twice_receives_the_sum_of_both_gradients()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(1), 5);

        using (var tape = new Tape())
        {
            // loss = Σ (x + 3x) → d/dx = 4 everywhere.
            tape.Backward(Ops.Sum(Ops.Residual(x, Ops.Scale(x, 3f))));
        }

        Assert.All(x.Grad!.ToFloatArray(), g => Assert.Equal(4f, g));
    }

    [Fact]
    public void Gradients_of_leaves_accumulate_across_backward_passes()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(2), 3);

        for (int pass = 0; pass < 2; pass++)
        {
            using var tape = new Tape();
            tape.Backward(Ops.Sum(Ops.Scale(x, 2.5f)));
        }

        Assert.All(x.Grad!.ToFloatArray(), g => Assert.Equal(5f, g));
    }

    [Fact]
    public void NoGrad_records_nothing()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(3), 4);
        using var tape = new Tape();

        Tensor y;
        using (Tape.NoGrad())
        {
            y = Ops.Gelu(x);
        }

        Assert.False(y.RequiresGrad);
        Assert.Throws<InvalidOperationException>(() => tape.Backward(Ops.Sum(y)));
    }

    [Fact]
    public void Detach_stops_the_gradient_but_shares_the_values()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(4), 6);

        using (var tape = new Tape())
        {
            Tensor frozen = x.Detach();
            Assert.Equal(x.ToFloatArray(), frozen.ToFloatArray());
            // loss = Σ (2x + detach(x)) → d/dx = 2, not 3.
            tape.Backward(Ops.Sum(Ops.Residual(Ops.Scale(x, 2f), frozen)));
        }

        Assert.All(x.Grad!.ToFloatArray(), g => Assert.Equal(2f, g));
    }

    [Fact]
    public void Disposing_the_tape_frees_every_tensor_it_made()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(5), 16, 8);
        using Tensor w = Leaf(ctx, new Random(6), 8, 8);
        long before = ctx.Memory.LiveBytes;

        using (var tape = new Tape())
        {
            tape.Backward(Ops.Sum(Ops.Gelu(Ops.Linear(x, w))));
        }
        x.Grad!.Dispose();
        x.Grad = null;
        w.Grad!.Dispose();
        w.Grad = null;

        Assert.Equal(before, ctx.Memory.LiveBytes);
    }

    [Fact]
    public void A_scope_frees_what_no_backward_reads_and_the_tape_holds_the_rest_until_its_backward_ran()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor a = Leaf(ctx, new Random(8), 64);
        long tensorBytes = a.ByteCount;

        // sum: read by gelu's backward; gelu: read by nobody (scale and residual read nothing); scaled: read by nobody.
        static Tensor Segment(Tensor x) => Ops.Residual(Ops.Scale(Ops.Gelu(Ops.Residual(x, x)), 2f), x);

        float[] freedGrad, keptGrad;
        using (var tape = new Tape())
        {
            long before = ctx.Memory.LiveBytes;
            Tensor output;
            using (var scope = new TensorScope())
            {
                output = scope.Keep(Segment(a));
            }
            // Left: the output and the sum that gelu's backward reads.
            Assert.Equal(before + 2 * tensorBytes, ctx.Memory.LiveBytes);
            tape.Backward(Ops.Sum(output));
            freedGrad = a.Grad!.ToFloatArray();
        }
        a.Grad!.Dispose();
        a.Grad = null;
        using (var tape = new Tape())
        {
            tape.Backward(Ops.Sum(Segment(a)));
            keptGrad = a.Grad!.ToFloatArray();
        }
        // The same kernels on the same values, whether the intermediates were disposed early or not.
        Assert.Equal(keptGrad, freedGrad);
    }

    [Fact]
    public void A_saved_tensor_is_freed_once_the_backward_that_reads_it_has_run()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor a = Leaf(ctx, new Random(9), 64);
        long baseline = ctx.Memory.LiveBytes;

        using (var tape = new Tape())
        {
            Tensor output;
            using (var scope = new TensorScope())
            {
                output = scope.Keep(Ops.Gelu(Ops.Residual(a, a)));
            }
            Tensor loss = Ops.Sum(output);
            tape.Backward(loss);
            // Left: the output and the loss (the tape's), a's gradient; the sum that gelu's backward read is gone.
            Assert.Equal(baseline + output.ByteCount + loss.ByteCount + a.Grad!.ByteCount, ctx.Memory.LiveBytes);
        }
        a.Grad!.Dispose();
        a.Grad = null;
        Assert.Equal(baseline, ctx.Memory.LiveBytes);
    }

    /// <summary>A residual MLP block: x + W2·gelu(W1·rmsnorm(x)).</summary>
    private static Tensor Block(Tensor x, Tensor norm, Tensor w1, Tensor w2) =>
        Ops.Residual(x, Ops.Linear(Ops.Gelu(Ops.Linear(Ops.RmsNorm(x, norm, 1e-5f), w1)), w2));

    private static (float[][] Grads, long PeakBytes) TrainStep(bool checkpointed)
    {
        const int layers = 6, rows = 64, width = 32, hidden = 128;
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var rng = new Random(7);
        using Tensor input = Leaf(ctx, rng, rows, width);
        var weights = Enumerable.Range(0, layers)
            .Select(_ => (Norm: Leaf(ctx, rng, width), W1: Leaf(ctx, rng, hidden, width), W2: Leaf(ctx, rng, width, hidden)))
            .ToArray();

        ctx.ResetPeakMemory();
        using (var tape = new Tape())
        {
            Tensor h = input;
            foreach (var (norm, w1, w2) in weights)
            {
                h = checkpointed ? Checkpoint.Run(x => Block(x, norm, w1, w2), h) : Block(h, norm, w1, w2);
            }
            tape.Backward(Ops.Sum(h));
        }
        long peak = ctx.Memory.PeakBytes;

        var grads = new List<float[]> { input.Grad!.ToFloatArray() };
        foreach (var (norm, w1, w2) in weights)
        {
            grads.Add(norm.Grad!.ToFloatArray());
            grads.Add(w1.Grad!.ToFloatArray());
            grads.Add(w2.Grad!.ToFloatArray());
            norm.Dispose();
            w1.Dispose();
            w2.Dispose();
        }
        return (grads.ToArray(), peak);
    }

    [Fact]
    public void Checkpointing_gives_identical_gradients_with_a_lower_peak()
    {
        (float[][] plain, long plainPeak) = TrainStep(checkpointed: false);
        (float[][] checkpointed, long checkpointedPeak) = TrainStep(checkpointed: true);

        // The rerun executes the same kernels on the same inputs in the same order: bit-identical.
        Assert.Equal(plain.Length, checkpointed.Length);
        for (int i = 0; i < plain.Length; i++)
        {
            Assert.Equal(plain[i], checkpointed[i]);
        }
        output.WriteLine($"peak live bytes: {plainPeak:N0} without checkpointing, {checkpointedPeak:N0} with");
        // Six blocks each keep ~4 activations of [64, 128] floats without checkpointing; with it,
        // only block boundaries live plus one block's activations during its rerun.
        Assert.True(checkpointedPeak < plainPeak * 3 / 4,
            $"peak live bytes: {checkpointedPeak:N0} with checkpointing vs {plainPeak:N0} without");
    }

    /// <summary>A segment that scales by a factor drawn from <paramref name="generator"/>, as dropout draws its mask.</summary>
    private static Tensor ScaleByDraw(Tensor x, Random generator)
    {
        Checkpoint.BeforeDrawing(generator);
        return Ops.Scale(x, (float)generator.NextDouble());
    }

    [Fact]
    public void A_checkpointed_segment_redraws_its_random_values_in_the_rerun_and_leaves_the_generator_as_the_forward_did()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(1), 4);
        var generator = new Xoshiro256(5);
        var twin = new Xoshiro256(5);
        float factor = (float)twin.NextDouble();

        using (var tape = new Tape())
        {
            Tensor y = Checkpoint.Run(h => ScaleByDraw(h, generator), x);
            Assert.Equal(twin.State, generator.State);
            // A draw between the forward and the backward: the rerun must neither see it nor undo it.
            float later = (float)generator.NextDouble();
            Assert.Equal((float)twin.NextDouble(), later);
            tape.Backward(Ops.Sum(y));
        }

        // d/dx of Σ factor·x is the first forward's factor, so the rerun drew it again.
        Assert.All(x.Grad!.ToFloatArray(), g => Assert.Equal(factor, g));
        Assert.Equal(twin.State, generator.State);
    }

    [Fact]
    public void A_checkpointed_segment_refuses_a_generator_whose_state_cannot_be_restored()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Leaf(ctx, new Random(1), 4);
        using var tape = new Tape();

        var e = Assert.Throws<InvalidOperationException>(() => Checkpoint.Run(h => ScaleByDraw(h, new Random(5)), x));

        Assert.Contains("Random", e.Message);
        Assert.Contains("cannot be restored", e.Message);
        // Outside a checkpointed segment, any generator may be drawn from.
        Assert.Equal(x.ElementCount, ScaleByDraw(x, new Random(5)).ElementCount);
    }
}
