using NativeVlm.IO;
using Xunit;

namespace NativeVlm.Tests.Checks;

/// <summary>
/// nativevlm compare --dpo_batch as a user runs it: one DPO step of an adapter fixture's TRL batch through
/// the trainer's objective, against TRL's log-probs, losses, rewards and adapter gradients. On a GPU machine
/// tools/gpu-check.sh runs the same command with --device cuda.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class DpoCompareCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public static TheoryData<string> AdapterFixtures => new() { "tiny-idefics3-lora", "tiny-idefics3-dora", "tiny-idefics3-dora-seedcfg" };

    /// <summary>What compare produces for one loss type, under the fixtures' names.</summary>
    private static readonly string[] StepOutputs =
        ["policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
         "policy_mean_chosen_logits", "policy_mean_rejected_logits"];

    private static string[] LossOutputs(string type) =>
        [$"{type}.losses", $"{type}.loss", $"{type}.chosen_rewards", $"{type}.rejected_rewards"];

    private static (int ExitCode, string Output) CompareStep(string fixture, string batch, params string[] flags) =>
        CliTests.RunHost(["compare", "--model", Fixtures.Path("tiny-idefics3"), "--adapter", Fixtures.Path(fixture),
            "--dpo_batch", batch, "--expected", Fixtures.Path(fixture, "dpo_outputs.safetensors"), .. flags]);

    [Theory]
    [MemberData(nameof(AdapterFixtures))]
    public void The_sigmoid_step_and_every_adapter_gradient_match_trl(string fixture)
    {
        string grads = Fixtures.Path(fixture, "grads.safetensors");
        using SafeTensorsReader expected = SafeTensorsReader.Open(Fixtures.Path(fixture, "dpo_outputs.safetensors"));
        using SafeTensorsReader gradients = SafeTensorsReader.Open(grads);
        int compared = StepOutputs.Concat(LossOutputs("sigmoid")).Count(expected.Contains) + gradients.Names.Count;

        (int exitCode, string output) = CompareStep(fixture, Fixtures.Path(fixture, "dpo_batch.safetensors"), "--expected_grads", grads);

        Assert.True(exitCode == 0, output);
        Assert.Contains($"compare: {compared} passed, 0 failed", output);
        Assert.Matches(@"sigmoid\.loss\s+1\s", output);
    }

    [Fact]
    public void Ipo_compares_its_length_averaged_log_probs_and_robust_takes_its_label_smoothing()
    {
        string fixture = "tiny-idefics3-lora", batch = Fixtures.Path(fixture, "dpo_batch.safetensors");

        (int ipoExit, string ipo) = CompareStep(fixture, batch, "--loss_type", "ipo");
        // The fixture's robust loss uses label_smoothing 0.1 (its README).
        (int robustExit, string robust) = CompareStep(fixture, batch, "--loss_type", "robust", "--label_smoothing", "0.1");

        Assert.True(ipoExit == 0, ipo);
        Assert.Matches(@"ipo\.policy_chosen_logps_mean\s+\d+\s+\S+\s+\S+\s+pass", ipo);
        Assert.True(robustExit == 0, robust);
        Assert.Matches(@"robust\.losses\s+\d+\s+\S+\s+\S+\s+pass", robust);
    }

    [Fact]
    public void Another_beta_fails_the_rewards_with_exit_one()
    {
        // TRL's step used beta 0.1; with 0.2 every reward doubles, far beyond any tolerance.
        (int exitCode, string output) = CompareStep("tiny-idefics3-lora", Fixtures.Path("tiny-idefics3-lora", "dpo_batch.safetensors"), "--beta", "0.2");

        Assert.Equal(1, exitCode);
        Assert.Matches(@"sigmoid\.chosen_rewards\s+\d+\s+\S+\s+\S+\s+FAIL", output);
    }

    [Fact]
    public void Rows_that_differ_from_what_trl_gave_the_model_exit_two_naming_the_tensor_and_position()
    {
        string source = Fixtures.Path("tiny-idefics3-lora", "dpo_batch.safetensors"), tampered = _dir.Path("dpo_batch.safetensors");
        using (SafeTensorsReader file = SafeTensorsReader.Open(source))
        {
            var writer = new SafeTensorsWriter();
            foreach (string name in file.Names)
            {
                SafeTensorInfo info = file.GetInfo(name);
                byte[] bytes = file.GetBytes(name).ToArray();
                if (name == "concatenated.input_ids")
                {
                    bytes[0] ^= 1; // the first token of the first row, which is real in TRL's flush-left rows
                }
                writer.AddRaw(name, info.DType, info.Shape, bytes);
            }
            writer.Save(tampered);
        }

        (int exitCode, string output) = CompareStep("tiny-idefics3-lora", tampered);

        Assert.Equal(2, exitCode);
        Assert.Contains($"{tampered}: tensor 'concatenated.input_ids': row 0, position 0: TRL gave the model id", output);
    }

    [Fact]
    public void A_dpo_batch_needs_an_adapter_and_excludes_inputs()
    {
        string batch = Fixtures.Path("tiny-idefics3-lora", "dpo_batch.safetensors");

        (int noAdapter, string noAdapterOutput) = CliTests.RunHost("compare", "--model", Fixtures.Path("tiny-idefics3"),
            "--dpo_batch", batch, "--expected", Fixtures.Path("tiny-idefics3-lora", "dpo_outputs.safetensors"));
        (int both, string bothOutput) = CompareStep("tiny-idefics3-lora", batch, "--inputs", Fixtures.Path("tiny-idefics3", "inputs.safetensors"));

        Assert.Equal(2, noAdapter);
        Assert.Contains("--dpo_batch needs --adapter", noAdapterOutput);
        Assert.Equal(2, both);
        Assert.Contains("give one of --inputs (a forward) and --dpo_batch (a DPO step)", bothOutput);
    }

    public void Dispose() => _dir.Dispose();
}
