using NativeVlm.Autograd;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>
/// Supervised fine-tuning by teacher forcing: transformers' causal-LM loss (mean cross-entropy of the
/// labelled next tokens; -100 ignored) of a collated batch (BatchCollator.CollateSft).
/// Metrics: loss, num_tokens (labelled tokens counted by the loss).
/// </summary>
public sealed class SftObjective(Idefics3Model model) : ITrainingObjective<Idefics3Inputs>
{
    public ObjectiveStep Step(Idefics3Inputs batch, double lossScale)
    {
        using var tape = new Tape();
        Tensor loss = model.Loss(model.Forward(batch), batch);
        float value = loss.ToFloatArray()[0];
        // d(loss × scale)/d(loss) = scale: the seed of the backward, as (loss / accumulation).backward().
        Tensor seed = tape.Own(Tensor.FromArray(loss.Context, [(float)lossScale], loss.Shape.ToArray()));
        tape.Backward(loss, seed);
        return Metrics(value, batch);
    }

    public ObjectiveStep Evaluate(Idefics3Inputs batch)
    {
        using var scope = new TensorScope();
        using IDisposable noGrad = Tape.NoGrad();
        Tensor loss = model.Loss(model.Forward(batch), batch);
        return Metrics(loss.ToFloatArray()[0], batch);
    }

    private static ObjectiveStep Metrics(float loss, Idefics3Inputs batch)
    {
        int tokens = 0;
        int[] labels = batch.Labels!;
        for (int b = 0; b < batch.Batch; b++)
        {
            for (int t = 1; t < batch.SeqLen; t++)
            {
                tokens += labels[b * batch.SeqLen + t] != Ops.IgnoreIndex ? 1 : 0;
            }
        }
        return new ObjectiveStep(new Dictionary<string, double> { ["loss"] = loss, ["num_tokens"] = tokens });
    }
}
