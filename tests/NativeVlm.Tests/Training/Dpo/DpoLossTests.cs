using System.Text.Json;
using NativeVlm.IO;
using NativeVlm.Training.Dpo;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests.Training.Dpo;

/// <summary>
/// <see cref="DpoLoss"/> against TRL v0.12.1's dpo_loss (the dpo-loss fixture: every loss type it holds,
/// every tensor), and the parts the fixture has not: bco_pair's running baseline, sft, rpo_alpha, mixed
/// loss types with weights, and every gradient against finite differences.
/// </summary>
public class DpoLossTests(ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Every_loss_type_of_the_fixture_matches_trl()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("dpo-loss", "dpo_loss.json")));
        using SafeTensorsReader file = SafeTensorsReader.Open(Fixtures.Path("dpo-loss", "dpo_loss.safetensors"));
        JsonElement differences = json.RootElement.GetProperty("fp32_vs_fp64_max_abs_diff");
        Assert.False(json.RootElement.GetProperty("reference_free").GetBoolean());
        double[] Input(string name) => file.ReadFloat32(name).Select(v => (double)v).ToArray();
        double[] pc = Input("policy_chosen_logps"), pr = Input("policy_rejected_logps");
        double[] rc = Input("reference_chosen_logps"), rr = Input("reference_rejected_logps");

        var compared = new HashSet<string>();
        JsonElement.ArrayEnumerator configs = json.RootElement.GetProperty("configs").EnumerateArray();
        Assert.NotEmpty(configs);
        foreach (JsonElement config in configs)
        {
            string key = config.GetProperty("key").GetString()!;
            var loss = new DpoLoss(new DpoLossOptions
            {
                LossTypes = [DpoLossTypes.Parse(config.GetProperty("loss_type").GetString()!)],
                Beta = config.GetProperty("beta").GetDouble(),
                LabelSmoothing = config.GetProperty("label_smoothing").GetDouble(),
            });
            DpoLossResult result = loss.Compute(pc, pr, rc, rr);
            var actual = new Dictionary<string, double[]>
            {
                ["losses"] = result.Losses,
                ["loss"] = [result.Loss],
                ["chosen_rewards"] = result.ChosenRewards,
                ["rejected_rewards"] = result.RejectedRewards,
                ["grad_policy_chosen_logps"] = result.GradPolicyChosen,
                ["grad_policy_rejected_logps"] = result.GradPolicyRejected,
            };
            foreach ((string suffix, double[] values) in actual)
            {
                string name = $"{key}.{suffix}";
                float[] expected = file.ReadFloat32(name);
                // The fixture is TRL in float32; this is float64 from the same float32 inputs, so it sits where
                // TRL's float64 rerun does: within the fixture's own fp32-vs-fp64 difference for that tensor
                // (dpo_loss.json, at most 1.65e-5), doubled, plus 2 float32 ulps of the value for the rounding
                // of the stored result itself (a difference of 0 in the json still leaves that).
                double tolerance = 2 * differences.GetProperty(name).GetDouble();
                AssertClose(name, values, expected, tolerance, relative: 2.5e-7);
                compared.Add(name);
            }
        }
        // Every tensor of the fixture except the 4 inputs was compared.
        Assert.Equal(file.Names.Count - 4, compared.Count);
        Assert.Equal(differences.EnumerateObject().Select(p => p.Name).Order(), compared.Order());
    }

    [Fact]
    public void Bco_pair_shifts_by_the_running_mean_of_batch_mean_rewards_and_keeps_it_as_state()
    {
        var loss = new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.BcoPair], Beta = 0.5 });
        double[] pc = [-3, -5], pr = [-4, -2], rc = [-3.5, -4], rr = [-4, -3];
        DpoLossResult first = loss.Compute(pc, pr, rc, rr);
        // The batch's mean reward: β·(π − ρ) over both completions of both pairs.
        double meanReward1 = new[] { 0.5 * 0.5, 0.5 * -1, 0.5 * 0, 0.5 * 1 }.Average();
        // TRL's RunningMoments starts at count 1e-24, so the first mean is (almost exactly) the first value.
        Assert.Equal(meanReward1, loss.Running.Mean, 12);
        double delta = loss.Running.Mean;
        double Expected(int i) => -DpoLoss.LogSigmoid(0.5 * (pc[i] - rc[i]) - delta) - DpoLoss.LogSigmoid(-(0.5 * (pr[i] - rr[i]) - delta));
        Assert.Equal(Expected(0), first.Losses[0], 12);
        Assert.Equal(Expected(1), first.Losses[1], 12);

        double[] pc2 = [-1, -2], pr2 = [-6, -7];
        double meanReward2 = new[] { 0.5 * (-1 - -3.5), 0.5 * (-2 - -4), 0.5 * (-6 - -4), 0.5 * (-7 - -3) }.Average();
        loss.Compute(pc2, pr2, rc, rr);
        Assert.Equal((meanReward1 + meanReward2) / 2, loss.Running.Mean, 12);
        Assert.Equal(2, loss.Running.Count, 12);

        // The state restores into a new loss (a resumed run) and gives the same next step.
        var resumed = new RunningMoments();
        resumed.Restore(loss.Running.State);
        var restored = new DpoLoss(loss.Options, resumed);
        Assert.Equal(loss.Compute(pc, pr, rc, rr).Losses, restored.Compute(pc, pr, rc, rr).Losses);
        Assert.Equal(loss.Running.State, restored.Running.State);
    }

    [Fact]
    public void Mixed_loss_types_add_weighted_losses_and_rewards_with_sft_and_rpo_on_the_nll()
    {
        double[] pc = [-3, -5, -7], pr = [-4, -2, -9], rc = [-3.5, -4, -7], rr = [-4, -3, -8];
        const double nll = 1.7;
        var sigmoid = new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid] }).Compute(pc, pr, rc, rr);
        var hinge = new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.Hinge] }).Compute(pc, pr, rc, rr);
        var mixed = new DpoLoss(new DpoLossOptions
        {
            LossTypes = [DpoLossType.Sigmoid, DpoLossType.Hinge, DpoLossType.Sft], LossWeights = [0.8, 0.3, 0.5], RpoAlpha = 0.25,
        }).Compute(pc, pr, rc, rr, nll);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(0.8 * sigmoid.Losses[i] + 0.3 * hinge.Losses[i] + 0.5 * nll + 0.25 * nll, mixed.Losses[i], 12);
            // sft has no preference rewards: the rewards are the other types' weighted sum (TRL's MPO).
            Assert.Equal((0.8 + 0.3) * sigmoid.ChosenRewards[i], mixed.ChosenRewards[i], 12);
            Assert.Equal(0.8 * sigmoid.GradPolicyChosen[i] + 0.3 * hinge.GradPolicyChosen[i], mixed.GradPolicyChosen[i], 12);
        }
        Assert.Equal(0.5 + 0.25, mixed.GradNll, 12);
        Assert.Throws<ArgumentException>(() => new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.Sft] }).Compute(pc, pr, rc, rr));
        Assert.Throws<ArgumentException>(() => new DpoLoss(new DpoLossOptions { LossTypes = [DpoLossType.Sigmoid], LossWeights = [1, 2] }));
        Assert.Throws<ArgumentException>(() => DpoLossTypes.Parse("kto"));
    }

    /// <summary>Every loss type's analytic gradient against central differences of its own loss (bco_pair with its baseline fixed).</summary>
    [Theory]
    [MemberData(nameof(LossTypeNames))]
    public void Gradients_match_finite_differences(string lossType)
    {
        DpoLossType type = DpoLossTypes.Parse(lossType);
        var options = new DpoLossOptions { LossTypes = [type], Beta = 0.3, LabelSmoothing = 0.15, RpoAlpha = 0.5 };
        var rng = new Random(3);
        double[] Draw() => Enumerable.Range(0, 5).Select(_ => -10 * rng.NextDouble() - 1).ToArray();
        double[] pc = Draw(), pr = Draw(), rc = Draw(), rr = Draw();
        const double nll = 2.3, h = 1e-6;
        var state = new RunningMomentsState(0.2, 1, 1, 3);
        DpoLossResult At(double[] c, double[] r, double n)
        {
            var running = new RunningMoments();
            running.Restore(state);
            return new DpoLoss(options, running).Compute(c, r, rc, rr, n);
        }
        DpoLossResult result = At(pc, pr, nll);
        for (int i = 0; i < pc.Length; i++)
        {
            double[] up = (double[])pc.Clone(), down = (double[])pc.Clone();
            up[i] += h;
            down[i] -= h;
            // bco_pair's baseline moves with the inputs in the numeric loss but is detached in TRL's: compare
            // with its analytic gradient at the baseline the perturbed step would see, which changes by O(h).
            double numeric = (At(up, pr, nll).Loss - At(down, pr, nll).Loss) / (2 * h);
            Assert.True(Math.Abs(numeric - result.GradPolicyChosen[i]) < Tolerance(type), $"{lossType} chosen {i}: {numeric} vs {result.GradPolicyChosen[i]}");
            up = (double[])pr.Clone();
            down = (double[])pr.Clone();
            up[i] += h;
            down[i] -= h;
            numeric = (At(pc, up, nll).Loss - At(pc, down, nll).Loss) / (2 * h);
            Assert.True(Math.Abs(numeric - result.GradPolicyRejected[i]) < Tolerance(type), $"{lossType} rejected {i}: {numeric} vs {result.GradPolicyRejected[i]}");
        }
        double nllNumeric = (At(pc, pr, nll + h).Loss - At(pc, pr, nll - h).Loss) / (2 * h);
        Assert.Equal(nllNumeric, result.GradNll, 6);
    }

    // Central differences with h = 1e-6 on O(1..100) losses: ~1e-8 error; bco_pair's baseline (a mean over
    // 2n = 10 rewards, folded in with weight 1/4) moves by β·h/10/4 per perturbation, shifting its loss by up to
    // that times its slope (≤ 1): 2e-3·β relative error in the gradient at most — hence a looser bound there.
    private static double Tolerance(DpoLossType type) => type == DpoLossType.BcoPair ? 2e-2 : 1e-6;

    public static TheoryData<string> LossTypeNames => new(DpoLossTypes.All);

    private void AssertClose(string name, double[] actual, float[] expected, double atol, double relative)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            double bound = atol + relative * Math.Abs(expected[i]);
            worst = Math.Max(worst, error);
            Assert.True(error <= bound, $"{name}[{i}]: {actual[i]} vs {expected[i]}, error {error:E3} > {bound:E3}");
        }
        output.WriteLine($"{name}: max abs error {worst:E2} (atol {atol:E2})");
    }
}
