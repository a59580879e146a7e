using NativeVlm.Tensors;

namespace NativeVlm.Autograd;

/// <summary>
/// Gradient checkpointing: a segment's forward runs without recording, so its activations are
/// freed at once; backward runs the segment again on a tape of its own and back-propagates
/// through that. Parameters used inside the segment receive their gradients during the rerun.
/// The segment must be deterministic (same inputs → same outputs).
/// </summary>
public static class Checkpoint
{
    public static Tensor Run(Func<Tensor, Tensor> segment, Tensor input)
    {
        if (!Tape.IsRecording)
        {
            return segment(input);
        }

        Tensor output;
        using (Tape.NoGrad())
        using (var scope = new TensorScope())
        {
            output = scope.Keep(segment(input));
        }

        // The parameters inside the segment are not known until it runs again, so the output is
        // always treated as needing grad.
        output.RequiresGrad = true;
        Ops.Record("checkpoint", output, gradOutput =>
        {
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
        });
        return output;
    }
}
