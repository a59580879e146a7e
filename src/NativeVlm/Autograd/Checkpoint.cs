using NativeVlm.Tensors;

namespace NativeVlm.Autograd;

/// <summary>
/// Gradient checkpointing: a segment's forward runs without recording, so its activations are
/// freed at once; backward runs the segment again on a tape of its own and back-propagates
/// through that. Parameters used inside the segment receive their gradients during the rerun.
/// The segment must compute the same outputs from the same inputs. Random draws inside it (LoRA
/// dropout) are allowed from generators whose state can be restored: code that draws calls
/// <see cref="BeforeDrawing"/> first, the checkpoint notes each such generator's state at its first
/// draw in the segment (its state at the segment's start) and the rerun draws from that state again.
/// </summary>
public static class Checkpoint
{
    /// <summary>
    /// While the first forward of a recorded segment runs on this thread: each generator drawn from
    /// so far, with its state before its first draw. Null otherwise (no draw needs noting then).
    /// </summary>
    [ThreadStatic] private static Dictionary<IRandomState, ulong[]>? _segmentStartStates;

    /// <summary>
    /// Called by code about to draw from <paramref name="generator"/> during a forward. Inside a
    /// checkpointed segment, the generator's state is noted (first draw only) so that the rerun
    /// draws the same values; a generator whose state cannot be set is refused there.
    /// </summary>
    public static void BeforeDrawing(Random generator)
    {
        if (_segmentStartStates == null)
        {
            return;
        }
        if (generator is not IRandomState restorable)
        {
            throw new InvalidOperationException(
                $"a checkpointed segment draws from a {generator.GetType().Name}, whose state cannot be restored for its recompute: " +
                $"draw from an {nameof(IRandomState)} generator, or turn gradient checkpointing off");
        }
        _segmentStartStates.TryAdd(restorable, restorable.State);
    }

    public static Tensor Run(Func<Tensor, Tensor> segment, Tensor input)
    {
        if (!Tape.IsRecording)
        {
            return segment(input);
        }

        Tensor output;
        var startStates = new Dictionary<IRandomState, ulong[]>();
        // No recorded segment starts inside this one (its forward runs under NoGrad), so there is no outer one to restore.
        _segmentStartStates = startStates;
        try
        {
            using (Tape.NoGrad())
            using (var scope = new TensorScope())
            {
                output = scope.Keep(segment(input));
            }
        }
        finally
        {
            _segmentStartStates = null;
        }

        // The parameters inside the segment are not known until it runs again, so the output is
        // always treated as needing grad.
        output.RequiresGrad = true;
        Ops.Record("checkpoint", output, gradOutput =>
        {
            // The rerun redraws the first forward's values; afterwards each generator is back where the
            // backward found it, so draws after the step are those a run without checkpointing makes.
            var backwardStates = startStates.Keys.ToDictionary(generator => generator, generator => generator.State);
            try
            {
                foreach ((IRandomState generator, ulong[] state) in startStates)
                {
                    generator.State = state;
                }
                using var tape = new Tape();
                Tensor replayInput = input.Detach();
                replayInput.RequiresGrad = input.RequiresGrad;
                Tensor replayOutput = segment(replayInput);
                if (replayOutput.RequiresGrad)
                {
                    tape.Backward(replayOutput, gradOutput);
                }
                if (input.RequiresGrad && replayInput.Grad != null)
                {
                    Ops.AccumulateGrad(input, replayInput.Grad);
                }
            }
            finally
            {
                foreach ((IRandomState generator, ulong[] state) in backwardStates)
                {
                    generator.State = state;
                }
            }
        }, saved: [input]);
        return output;
    }
}
