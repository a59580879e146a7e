using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests.Adapters;

/// <summary>
/// One DPO step as the adapter fixtures computed it with TRL v0.12.1's DPOTrainer math, for
/// checking adapted log-probs and gradients (the training issue owns DPO proper).
/// <see cref="Read"/> rebuilds concatenated_inputs / concatenated_forward from the collated batch:
/// rows [chosen; rejected] = prompt + completion (completions right-padded to one length with 0),
/// rolled left to the row's first real token, with the loss mask = the completion's attention
/// mask; the images of each pair are given to both of its rows.
/// </summary>
internal sealed class DpoStep
{
    private DpoStep(Idefics3Inputs inputs, int[] targets, int pairs)
    {
        Inputs = inputs;
        Targets = targets;
        Pairs = pairs;
    }

    /// <summary>The concatenated batch [2·pairs, seq] exactly as the model received it.</summary>
    public Idefics3Inputs Inputs { get; }

    /// <summary>[2·pairs, seq]: the next token where it is a completion token, else <see cref="Ops.IgnoreIndex"/>.</summary>
    public int[] Targets { get; }

    public int Pairs { get; }

    public static DpoStep Read(string batchPath)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(batchPath);
        long[] promptShape = file.GetInfo("prompt_input_ids").Shape.ToArray();
        int pairs = (int)promptShape[0], promptLength = (int)promptShape[1];
        long[] prompt = file.ReadInt64("prompt_input_ids"), promptMask = file.ReadInt64("prompt_attention_mask");
        int chosenLength = (int)file.GetInfo("chosen_input_ids").Shape[1], rejectedLength = (int)file.GetInfo("rejected_input_ids").Shape[1];
        int completionLength = Math.Max(chosenLength, rejectedLength);
        int width = promptLength + completionLength, rows = 2 * pairs;

        var ids = new long[rows * width];
        var mask = new long[rows * width];
        var lossMask = new long[rows * width];
        for (int kind = 0; kind < 2; kind++)
        {
            string completion = kind == 0 ? "chosen" : "rejected";
            int length = kind == 0 ? chosenLength : rejectedLength;
            long[] completionIds = file.ReadInt64($"{completion}_input_ids"), completionMask = file.ReadInt64($"{completion}_attention_mask");
            for (int pair = 0; pair < pairs; pair++)
            {
                int row = kind * pairs + pair;
                var rowIds = new long[width];
                var rowMask = new long[width];
                var rowLoss = new long[width];
                Array.Copy(prompt, pair * promptLength, rowIds, 0, promptLength);
                Array.Copy(promptMask, pair * promptLength, rowMask, 0, promptLength);
                Array.Copy(completionIds, pair * length, rowIds, promptLength, length);
                Array.Copy(completionMask, pair * length, rowMask, promptLength, length);
                Array.Copy(completionMask, pair * length, rowLoss, promptLength, length);
                // Flush left: torch.roll(row, -first_one_idx).
                int shift = Array.IndexOf(rowMask, 1L);
                for (int t = 0; t < width; t++)
                {
                    int from = (t + shift) % width;
                    ids[row * width + t] = rowIds[from];
                    mask[row * width + t] = rowMask[from];
                    lossMask[row * width + t] = rowLoss[from];
                }
            }
        }
        // TRL 0.12 keeps the columns before first_empty_col − 1 when some column is empty, all of them otherwise.
        int firstEmpty = Enumerable.Range(0, width).FirstOrDefault(t => Enumerable.Range(0, rows).All(r => mask[r * width + t] == 0), -1);
        int seq = firstEmpty < 0 ? width : firstEmpty - 1;

        long[] fileIds = file.ReadInt64("concatenated.input_ids"), fileMask = file.ReadInt64("concatenated.attention_mask");
        Assert.Equal([rows, seq], file.GetInfo("concatenated.input_ids").Shape.ToArray());
        Assert.Equal(fileIds, Crop(ids, rows, width, seq));
        Assert.Equal(fileMask, Crop(mask, rows, width, seq));
        long[] loss = Crop(lossMask, rows, width, seq);

        var targets = new int[rows * seq];
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < seq; t++)
            {
                targets[r * seq + t] = t + 1 < seq && loss[r * seq + t + 1] == 1 ? (int)fileIds[r * seq + t + 1] : Ops.IgnoreIndex;
            }
        }

        long[] pixelShape = file.GetInfo("pixel_values").Shape.ToArray();
        float[] pixels = file.ReadFloat32("pixel_values");
        byte[] pixelMask = file.ReadUInt8("pixel_attention_mask");
        int[] concatenatedPixelShape = [rows, .. pixelShape.Skip(1).Select(d => (int)d)];
        var inputs = new Idefics3Inputs(rows, seq, fileIds.Select(id => (int)id).ToArray(), fileMask.Select(m => (byte)m).ToArray(),
            [.. pixels, .. pixels], concatenatedPixelShape, [.. pixelMask, .. pixelMask], Labels: null, TargetMask: null);
        return new DpoStep(inputs, targets, pairs);
    }

    private static long[] Crop(long[] values, int rows, int width, int seq) =>
        Enumerable.Range(0, rows).SelectMany(r => values.Skip(r * width).Take(seq)).ToArray();

    /// <summary>Σ of the completion tokens' log-probs per row [2·pairs]; under a tape, <paramref name="logProbs"/> is the tensor to back-propagate from.</summary>
    public double[] SequenceLogProbs(Idefics3Model model, out Tensor logProbs)
    {
        TensorScope scope = TensorScope.Current!;
        Tensor hidden = model.Forward(Inputs);
        Tensor targets = scope.Own(Tensor.FromArray(model.LmHead.Context, Targets, Inputs.Batch, Inputs.SeqLen));
        logProbs = Ops.LmLogProb(hidden, model.LmHead, targets);                      // (rows, seq), 0 where ignored
        float[] values = logProbs.ToFloatArray();
        return Enumerable.Range(0, Inputs.Batch)
            .Select(r => values.Skip(r * Inputs.SeqLen).Take(Inputs.SeqLen).Sum(v => (double)v)).ToArray();
    }

    /// <summary>
    /// TRL's sigmoid loss, mean over pairs: −log σ(β·((π_c − π_r) − (ρ_c − ρ_r))), with its
    /// gradient with respect to each row's summed log-prob, both in double on the host.
    /// </summary>
    public (double Loss, double[] GradSums) SigmoidLoss(double[] policy, double[] reference, double beta)
    {
        double loss = 0;
        var grad = new double[2 * Pairs];
        for (int i = 0; i < Pairs; i++)
        {
            double margin = policy[i] - policy[Pairs + i] - (reference[i] - reference[Pairs + i]);
            loss += -LogSigmoid(beta * margin) / Pairs;
            // d/dz[−log σ(z)] = −σ(−z), z = β·margin.
            double dMargin = -beta * Sigmoid(-beta * margin) / Pairs;
            grad[i] = dMargin;
            grad[Pairs + i] = -dMargin;
        }
        return (loss, grad);
    }

    /// <summary>d loss / d log-prob per token [rows, seq]: each row's gradient at its completion tokens.</summary>
    public Tensor LogProbGradient(Context ctx, double[] gradSums)
    {
        var seed = new float[Targets.Length];
        for (int i = 0; i < seed.Length; i++)
        {
            seed[i] = Targets[i] == Ops.IgnoreIndex ? 0f : (float)gradSums[i / Inputs.SeqLen];
        }
        return TensorScope.Current!.Own(Tensor.FromArray(ctx, seed, Inputs.Batch, Inputs.SeqLen));
    }

    private static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));

    private static double LogSigmoid(double z) => z >= 0 ? -Math.Log(1 + Math.Exp(-z)) : z - Math.Log(1 + Math.Exp(z));
}
