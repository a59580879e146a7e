using System.Diagnostics;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Adapters;
using NativeVlm.Checks;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Cli;

[Verb("compare", HelpText = "Run a model on reference inputs and compare its outputs with reference outputs (e.g. from transformers).")]
public sealed class CompareOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("Check a snapshot against transformers' outputs", new CompareOptions
        {
            Model = "tests/fixtures/tiny-idefics3", Inputs = "tests/fixtures/tiny-idefics3/inputs.safetensors",
            Expected = "tests/fixtures/tiny-idefics3/outputs.safetensors",
        }),
        UsageExample.Of("Check a merged snapshot against PEFT's merge_and_unload", new CompareOptions
        {
            Model = "merged", Inputs = "tests/fixtures/tiny-idefics3/inputs.safetensors",
            Expected = "tests/fixtures/tiny-idefics3-dora/dpo_outputs.safetensors", ExpectedPrefix = "merged.",
        }),
        UsageExample.Of("Check a DPO step (log-probs, loss, rewards, adapter gradients) against TRL's", new CompareOptions
        {
            Model = "tests/fixtures/tiny-idefics3", Adapter = "tests/fixtures/tiny-idefics3-lora",
            DpoBatch = "tests/fixtures/tiny-idefics3-lora/dpo_batch.safetensors",
            Expected = "tests/fixtures/tiny-idefics3-lora/dpo_outputs.safetensors",
            ExpectedGrads = "tests/fixtures/tiny-idefics3-lora/grads.safetensors",
        }),
    ];

    [Option("model", Required = true, HelpText = "Hugging Face snapshot folder (config.json + safetensors).")]
    public string Model { get; set; } = "";

    [Option("inputs", HelpText = "safetensors with input_ids, attention_mask, pixel_values, pixel_attention_mask[, labels, target_mask]; several cases under name prefixes (partial.input_ids, …). This or --dpo_batch is required.")]
    public string? Inputs { get; set; }

    [Option("dpo_batch", HelpText = "Instead of --inputs: a TRL preference batch (PreferenceCollator's output: prompt_/chosen_/rejected_input_ids and attention_mask, pixel_values, pixel_attention_mask; an adapter fixture's dpo_batch.safetensors) for one DPO step with --adapter on (policy) and off (reference), compared with --expected's policy_/reference_*_logps, policy_mean_*_logits and <loss_type>.losses/loss/chosen_rewards/rejected_rewards (default: none).")]
    public string? DpoBatch { get; set; }

    [Option("expected", Required = true, HelpText = "safetensors with reference outputs: vision.*, connector.image_hidden_states, text.hidden_states.N, logits, next_token_logprobs, loss; with --dpo_batch the DPO step's tensors.")]
    public string Expected { get; set; } = "";

    [Option("expected_grads", HelpText = "With --dpo_batch: safetensors of the mean loss's gradient of every adapter tensor, named <adapter key>.grad (an adapter fixture's grads.safetensors) (default: gradients not compared).")]
    public string? ExpectedGrads { get; set; }

    [Option("loss_type", Default = "sigmoid", HelpText = "With --dpo_batch: the DPO loss (TRL's name: sigmoid, hinge, ipo, robust, exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_pair, apo_zero, apo_down, sft).")]
    public string LossType { get; set; } = "sigmoid";

    [Option("beta", Default = 0.1, HelpText = "With --dpo_batch: DPO's beta (TRL's default 0.1).")]
    public double Beta { get; set; } = 0.1;

    [Option("label_smoothing", Default = 0.0, HelpText = "With --dpo_batch: label smoothing of the sigmoid (cDPO) and robust losses, in [0, 0.5] (below 0.5 for robust).")]
    public double LabelSmoothing { get; set; }

    [Option("adapter", HelpText = "PEFT LoRA/DoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply; the expected tensors compared are then those named adapter.* (logits, next_token_logprobs, loss) (default: none, the base model).")]
    public string? Adapter { get; set; }

    [Option("expected_prefix", HelpText = "Compare only the expected tensors named PREFIX.<output> (e.g. merged.) (default: adapter. with --adapter, else every tensor).")]
    public string? ExpectedPrefix { get; set; }

    [Option("quant", Default = BaseWeightQuantization.None, HelpText = "Base weights: none, or nf4 to quantise the Linear base weights at load time (QLoRA's NF4 with double quantisation) and print the memory saved.")]
    public BaseWeightQuantization Quant { get; set; }

    [Option("rtol", Default = 1e-4, HelpText = "Largest ‖out − ref‖ / ‖ref‖ that passes.")]
    public double Rtol { get; set; } = 1e-4;

    [Option("atol", Default = 1e-4, HelpText = "Largest max-abs error that passes (tensors).")]
    public double Atol { get; set; } = 1e-4;

    [Option("loss_atol", Default = 1e-5, HelpText = "Largest abs error that passes for losses.")]
    public double LossAtol { get; set; } = 1e-5;

    [Option("device", Default = "cpu", HelpText = DeviceOption.Help)]
    public string Device { get; set; } = "cpu";

    [Option("bf16", HelpText = DeviceOption.Bf16Help)]
    public bool? Bf16 { get; set; }
}

/// <summary>nativevlm compare: exit 0 only when every comparable expected tensor passes.</summary>
public static class CompareCommand
{
    public static int Run(CompareOptions options)
    {
        if (options.Rtol <= 0 || options.Atol <= 0 || options.LossAtol <= 0)
        {
            throw new ArgumentException("--rtol, --atol and --loss_atol must be positive");
        }
        if ((options.Inputs == null) == (options.DpoBatch == null))
        {
            throw new ArgumentException("give one of --inputs (a forward) and --dpo_batch (a DPO step)");
        }
        if (options.DpoBatch != null)
        {
            if (options.Adapter == null)
            {
                throw new ArgumentException("--dpo_batch needs --adapter: the policy is the model with the adapter on, the reference with it off");
            }
            if (options.ExpectedPrefix != null)
            {
                throw new ArgumentException("--expected_prefix applies to --inputs; a DPO step's tensors are named as TRL's (policy_chosen_logps, sigmoid.loss, …)");
            }
            DpoOptions(options).Validate();
        }
        else if (options.ExpectedGrads != null)
        {
            throw new ArgumentException("--expected_grads applies to --dpo_batch");
        }
        var clock = Stopwatch.StartNew();
        using Context ctx = DeviceOption.Open(options.Device, options.Bf16);
        using Idefics3Model model = ModelLoading.Model(options.Model, ctx, options.Quant);
        using LoraAdapterSet? adapters = ModelLoading.Adapter(model, options.Adapter);

        var tolerances = new ComparisonTolerances(options.Atol, options.Rtol, options.LossAtol);
        ReferenceComparison.Result result = options.DpoBatch != null
            ? DpoComparison.Run(model, adapters!, options.DpoBatch, options.Expected, options.ExpectedGrads, DpoOptions(options), tolerances)
            : ReferenceComparison.Run(model, options.Inputs!, options.Expected, tolerances,
                outputPrefix: options.ExpectedPrefix ?? (adapters == null ? "" : "adapter."));

        int width = Math.Max(6, result.Compared.Max(c => c.Name.Length));
        Console.WriteLine($"{"tensor".PadRight(width)}  {"compared",9}  {"max abs err",11}  {"rel err",9}  result");
        foreach (TensorComparison c in result.Compared)
        {
            string verdict = c.Passed ? "pass" : $"FAIL{(c.Problem != null ? $": {c.Problem}" : $" (atol {c.AbsoluteTolerance:G2}, rtol {c.RelativeTolerance:G2})")}";
            Console.WriteLine($"{c.Name.PadRight(width)}  {c.ComparedElements,9}  {c.MaxAbsError,11:E2}  {c.RelativeError,9:E2}  {verdict}");
        }
        if (result.NotProduced.Count > 0)
        {
            Console.WriteLine($"not produced by this model, not compared ({result.NotProduced.Count}): {string.Join(", ", result.NotProduced)}");
        }
        int failed = result.Compared.Count(c => !c.Passed);
        Console.WriteLine($"compare: {result.Compared.Count - failed} passed, {failed} failed ({clock.Elapsed.TotalSeconds:F1} s)");
        return result.Passed ? 0 : 1;
    }

    /// <summary>The DPO loss of --loss_type, --beta and --label_smoothing.</summary>
    private static DpoLossOptions DpoOptions(CompareOptions options) => new()
    {
        LossTypes = [DpoLossTypes.Parse(options.LossType)],
        Beta = options.Beta,
        LabelSmoothing = options.LabelSmoothing,
    };
}
