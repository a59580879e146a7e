using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Checks;

/// <summary>
/// One DPO step of a model with adapters on a TRL preference batch (<see cref="PreferenceBatchFile"/>),
/// through the trainer's own <see cref="DpoObjective"/>, compared with the outputs TRL computed for it —
/// under the adapter fixtures' names: policy_/reference_{chosen,rejected}_logps (summed over the
/// completion), policy_mean_{chosen,rejected}_logits, and for the loss type run &lt;type&gt;.losses,
/// &lt;type&gt;.loss, &lt;type&gt;.chosen_rewards, &lt;type&gt;.rejected_rewards (ipo also
/// ipo.*_logps_mean); with a gradients file, every adapter tensor's gradient of the mean loss
/// (&lt;adapter key&gt;.grad). Losses and rewards take the loss tolerance; rewards are β times log-prob
/// differences, as small as the losses.
/// </summary>
public static class DpoComparison
{
    public static ReferenceComparison.Result Run(Idefics3Model model, LoraAdapterSet adapters, string batchPath, string expectedPath,
        string? gradsPath, DpoLossOptions options, ComparisonTolerances tolerances)
    {
        if (options.LossTypes.Count != 1)
        {
            throw new ArgumentException("a DPO comparison runs one loss type, whose tensors the expected file names <type>.*");
        }
        DpoBatch batch = PreferenceBatchFile.Read(batchPath);
        using SafeTensorsReader expected = SafeTensorsReader.Open(expectedPath);
        foreach (Tensor p in adapters.Parameters)
        {
            p.Grad?.Dispose();
            p.Grad = null;
        }
        DpoStepResult step = new DpoObjective(model, adapters, new DpoLoss(options)).Step(batch, lossScale: 1);

        string type = options.LossTypes[0].Name();
        int pairs = step.Pairs;
        double[] Mean(double[] sums, int offset) => sums.Select((v, i) => v / step.CompletionTokens[offset + i]).ToArray();
        var produced = new List<(string Name, double[] Values, bool IsLoss)>
        {
            ("policy_chosen_logps", step.PolicyChosenLogProbs, false),
            ("policy_rejected_logps", step.PolicyRejectedLogProbs, false),
            ("reference_chosen_logps", step.Reference.Chosen, false),
            ("reference_rejected_logps", step.Reference.Rejected, false),
            ("policy_mean_chosen_logits", [step.MeanChosenLogit], false),
            ("policy_mean_rejected_logits", [step.MeanRejectedLogit], false),
            ($"{type}.losses", step.LossResult.Losses, true),
            ($"{type}.loss", [step.Loss], true),
            ($"{type}.chosen_rewards", step.LossResult.ChosenRewards, true),
            ($"{type}.rejected_rewards", step.LossResult.RejectedRewards, true),
        };
        if (options.AveragesLogProbs)
        {
            produced.Add(($"{type}.policy_chosen_logps_mean", Mean(step.PolicyChosenLogProbs, 0), false));
            produced.Add(($"{type}.policy_rejected_logps_mean", Mean(step.PolicyRejectedLogProbs, pairs), false));
            produced.Add(($"{type}.reference_chosen_logps_mean", Mean(step.Reference.Chosen, 0), false));
            produced.Add(($"{type}.reference_rejected_logps_mean", Mean(step.Reference.Rejected, pairs), false));
        }

        var compared = new List<TensorComparison>();
        var known = new HashSet<string>();
        foreach ((string name, double[] values, bool isLoss) in produced.Where(p => expected.Contains(p.Name)))
        {
            known.Add(name);
            compared.Add(Compare(name, values, expected.ReadFloat32(name), isLoss ? tolerances.LossAbsolute : tolerances.Absolute, tolerances.Relative));
        }
        if (gradsPath != null)
        {
            using SafeTensorsReader grads = SafeTensorsReader.Open(gradsPath);
            foreach ((string key, Tensor parameter) in adapters.NamedParameters)
            {
                string name = key + ".grad";
                if (!grads.Contains(name))
                {
                    compared.Add(new TensorComparison(name, 0, double.NaN, double.NaN, tolerances.Absolute, tolerances.Relative,
                        $"not in {gradsPath}"));
                    continue;
                }
                double[] values = parameter.Grad?.ToFloatArray().Select(g => (double)g).ToArray() ?? new double[parameter.ElementCount];
                compared.Add(Compare(name, values, grads.ReadFloat32(name), tolerances.Absolute, tolerances.Relative));
            }
        }
        // The expected file's other tensors: other loss types, other models' outputs (adapter.*, merged.*).
        List<string> notProduced = expected.Names.Where(n => !known.Contains(n)).Order(StringComparer.Ordinal).ToList();
        return new ReferenceComparison.Result(compared, notProduced);
    }

    private static TensorComparison Compare(string name, double[] values, float[] reference, double atol, double rtol)
    {
        if (values.Length != reference.Length)
        {
            return new TensorComparison(name, 0, double.NaN, double.NaN, atol, rtol, $"{values.Length} values, expected {reference.Length}");
        }
        double maxAbs = 0, diffSquares = 0, refSquares = 0;
        for (int i = 0; i < values.Length; i++)
        {
            double diff = Math.Abs(values[i] - reference[i]);
            maxAbs = double.IsNaN(diff) ? double.NaN : Math.Max(maxAbs, diff);
            diffSquares += diff * diff;
            refSquares += (double)reference[i] * reference[i];
        }
        double relative = refSquares > 0 ? Math.Sqrt(diffSquares / refSquares) : Math.Sqrt(diffSquares);
        return new TensorComparison(name, values.Length, maxAbs, relative, atol, rtol,
            double.IsNaN(maxAbs) ? "NaN where the reference is a number (or the reverse)" : null);
    }
}
