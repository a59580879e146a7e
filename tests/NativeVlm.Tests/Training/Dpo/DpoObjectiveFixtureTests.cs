using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Checks;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Training.Dpo;

/// <summary>
/// The DPO step of tiny-idefics3-lora / -dora / -dora-seedcfg (TRL v0.12.1 DPOTrainer math on PEFT
/// v0.13.2 adapters) through the trainer's own path: the fixture's collated batch through
/// <see cref="BatchCollator.CollateDpo"/>, then <see cref="DpoObjective.Step"/> — policy and reference
/// log-probs, mean completion logits, the losses and rewards of sigmoid, hinge, robust and ipo, and the
/// gradient of every adapter tensor (vision ones included in -dora-seedcfg) for sigmoid.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class DpoObjectiveFixtureTests(ITestOutputHelper output)
{
    public static TheoryData<string> AdapterFixtures => new() { "tiny-idefics3-lora", "tiny-idefics3-dora", "tiny-idefics3-dora-seedcfg" };

    // The fixtures' fp32-vs-fp64 differences (tolerance.json) are ≤ 1.1e-5 on summed log-probs of up to
    // 150 in magnitude, ≤ 1.3e-8 on mean logits, ≤ 9e-6 on losses and ≤ 1e-7 on gradients; an independent
    // fp32 implementation sums in other orders, hence the READMEs' atol 1e-4 on log-probs, logits and
    // gradients and 1e-5 on losses (means, whose rounding averages). Rewards are β·(log-prob differences):
    // β = 0.1 times the log-prob bound is 1e-5.
    private const double OutputAtol = 1e-4, GradientAtol = 1e-4, LossAtol = 1e-5, RewardAtol = 1e-5;

    // The fixtures' DPO settings (READMEs): beta 0.1; label_smoothing 0.1 for robust, 0 otherwise.
    private static readonly (string Name, DpoLossOptions Options)[] LossTypes =
    [
        ("sigmoid", new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid], Beta = 0.1 }),
        ("hinge", new DpoLossOptions { LossTypes = [DpoLossType.Hinge], Beta = 0.1 }),
        ("robust", new DpoLossOptions { LossTypes = [DpoLossType.Robust], Beta = 0.1, LabelSmoothing = 0.1 }),
        ("ipo", new DpoLossOptions { LossTypes = [DpoLossType.Ipo], Beta = 0.1 }),
    ];

    [Theory]
    [MemberData(nameof(AdapterFixtures))]
    public void Dpo_step_logprobs_losses_rewards_and_every_adapter_gradient_match_trl(string fixture)
    {
        using Context context = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path("tiny-idefics3"), context);
        using LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, Fixtures.Path(fixture));
        DpoBatch batch = PreferenceBatchFile.Read(Fixtures.Path(fixture, "dpo_batch.safetensors"));
        using SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(fixture, "dpo_outputs.safetensors"));
        using SafeTensorsReader grads = SafeTensorsReader.Open(Fixtures.Path(fixture, "grads.safetensors"));

        foreach ((string name, DpoLossOptions options) in LossTypes)
        {
            ZeroGrad(adapters);
            DpoStepResult step = new DpoObjective(model, adapters, new DpoLoss(options)).Step(batch, lossScale: 1);

            AssertClose("policy_chosen_logps", step.PolicyChosenLogProbs, expected.ReadFloat32("policy_chosen_logps"), OutputAtol);
            AssertClose("policy_rejected_logps", step.PolicyRejectedLogProbs, expected.ReadFloat32("policy_rejected_logps"), OutputAtol);
            AssertClose("reference_chosen_logps", step.Reference.Chosen, expected.ReadFloat32("reference_chosen_logps"), OutputAtol);
            AssertClose("reference_rejected_logps", step.Reference.Rejected, expected.ReadFloat32("reference_rejected_logps"), OutputAtol);
            AssertClose("policy_mean_chosen_logits", [step.MeanChosenLogit], expected.ReadFloat32("policy_mean_chosen_logits"), OutputAtol);
            AssertClose("policy_mean_rejected_logits", [step.MeanRejectedLogit], expected.ReadFloat32("policy_mean_rejected_logits"), OutputAtol);
            Assert.Equal(expected.ReadFloat32("policy_mean_chosen_logits")[0], step.Metrics["logits/chosen"], OutputAtol);
            if (name == "ipo")
            {
                int pairs = step.Pairs;
                double[] Mean(double[] sums, int offset) => sums.Select((v, i) => v / step.CompletionTokens[offset + i]).ToArray();
                AssertClose("ipo.policy_chosen_logps_mean", Mean(step.PolicyChosenLogProbs, 0), expected.ReadFloat32("ipo.policy_chosen_logps_mean"), OutputAtol);
                AssertClose("ipo.policy_rejected_logps_mean", Mean(step.PolicyRejectedLogProbs, pairs), expected.ReadFloat32("ipo.policy_rejected_logps_mean"), OutputAtol);
                AssertClose("ipo.reference_chosen_logps_mean", Mean(step.Reference.Chosen, 0), expected.ReadFloat32("ipo.reference_chosen_logps_mean"), OutputAtol);
                AssertClose("ipo.reference_rejected_logps_mean", Mean(step.Reference.Rejected, pairs), expected.ReadFloat32("ipo.reference_rejected_logps_mean"), OutputAtol);
            }
            AssertClose($"{name}.losses", step.LossResult.Losses, expected.ReadFloat32($"{name}.losses"), LossAtol);
            AssertClose($"{name}.loss", [step.Loss], expected.ReadFloat32($"{name}.loss"), LossAtol);
            AssertClose($"{name}.chosen_rewards", step.LossResult.ChosenRewards, expected.ReadFloat32($"{name}.chosen_rewards"), RewardAtol);
            AssertClose($"{name}.rejected_rewards", step.LossResult.RejectedRewards, expected.ReadFloat32($"{name}.rejected_rewards"), RewardAtol);
            Assert.Equal(step.Loss, step.Metrics["loss"]);

            if (name != "sigmoid")
            {
                continue; // grads.safetensors is the gradient of the mean sigmoid loss
            }
            var keys = adapters.NamedParameters.Select(p => p.Key + ".grad").ToList();
            Assert.Equal(grads.Names.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
            foreach ((string key, Tensor parameter) in adapters.NamedParameters)
            {
                Assert.Equal(grads.GetInfo(key + ".grad").Shape.ToArray(), parameter.Shape.ToArray());
                Assert.NotNull(parameter.Grad);
                AssertClose(key + ".grad", parameter.Grad!.ToFloatArray().Select(g => (double)g).ToArray(), grads.ReadFloat32(key + ".grad"), GradientAtol);
            }
        }
    }

    private static void ZeroGrad(LoraAdapterSet adapters)
    {
        foreach (Tensor p in adapters.Parameters)
        {
            p.Grad?.Dispose();
            p.Grad = null;
        }
    }

    private void AssertClose(string name, double[] actual, float[] expected, double atol)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxAbs = actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max();
        output.WriteLine($"{name}: max abs error {maxAbs:E2}");
        Assert.True(maxAbs <= atol, $"{name}: max abs error {maxAbs:E3} > {atol:E0}");
    }
}
