using NativeVlm.Cli;
using Xunit;

namespace NativeVlm.Tests.Cli;

/// <summary>
/// The host's command-line normaliser on the real verbs: kebab-case aliases of snake_case names and bare
/// booleans, as transformers' HfArgumentParser reads them; values left as given.
/// </summary>
public class ArgumentNormalizerTests
{
    private static readonly IReadOnlyList<VerbCommand> Verbs =
    [
        VerbCommand.Of<MergeOptions>(_ => 0),
        VerbCommand.Of<BenchOptions>(_ => 0),
        VerbCommand.Of<TrainOptions>(_ => 0),
        VerbCommand.Of<GenerateOptions>(_ => 0),
        VerbCommand.Of<StitchOptions>(_ => 0),
    ];

    private static string[] Normalize(params string[] args) => ArgumentNormalizer.Normalize(args, Verbs);

    [Fact]
    public void A_kebab_case_name_becomes_its_snake_case_name_and_its_value_is_untouched()
    {
        Assert.Equal(["train", "dpo", "--output_dir", "my-run", "--lora_target_modules", "all-linear"],
            Normalize("train", "dpo", "--output-dir", "my-run", "--lora-target-modules", "all-linear"));
    }

    [Fact]
    public void A_name_with_an_equals_value_is_renamed_up_to_the_equals_sign()
    {
        Assert.Equal(["bench", "--text_tokens=16", "--json=out-dir/x-y.json"], Normalize("bench", "--text-tokens=16", "--json=out-dir/x-y.json"));
    }

    [Fact]
    public void A_bare_boolean_at_the_end_or_before_another_option_means_true()
    {
        Assert.Equal(["bench", "--dpo_step", "true", "--gradient_checkpointing", "true", "--config", "c.json", "--use_dora", "true"],
            Normalize("bench", "--dpo-step", "--gradient-checkpointing", "--config", "c.json", "--use_dora"));
    }

    [Fact]
    public void A_boolean_with_a_value_keeps_it()
    {
        Assert.Equal(["bench", "--use_dora", "false", "--dpo_step=true"], Normalize("bench", "--use-dora", "false", "--dpo-step=true"));
    }

    [Fact]
    public void A_negative_number_after_a_flag_stays_its_value()
    {
        Assert.Equal(["train", "dpo", "--max_steps", "-1", "--warmup_ratio", "-0.5"], Normalize("train", "dpo", "--max-steps", "-1", "--warmup-ratio", "-0.5"));
        // After a boolean a negative number is a (bad) value for the parser to refuse, not a flag.
        Assert.Equal(["merge", "--force", "-1"], Normalize("merge", "--force", "-1"));
    }

    [Fact]
    public void A_flag_that_is_boolean_on_another_verb_gets_no_value_here()
    {
        // --use_dora is boolean on bench and train, not on merge, which has no such flag: the parser reports it.
        Assert.Equal(["merge", "--use_dora"], Normalize("merge", "--use-dora"));
    }

    [Fact]
    public void Help_version_and_positional_values_pass_through()
    {
        Assert.Equal(["help", "train"], Normalize("help", "train"));
        Assert.Equal(["train", "--help"], Normalize("train", "--help"));
        Assert.Equal(["--version"], Normalize("--version"));
        Assert.Equal(["train", "sft", "-", "--"], Normalize("train", "sft", "-", "--"));
    }

    [Fact]
    public void A_repeated_list_option_reads_as_one_with_every_value_in_order()
    {
        Assert.Equal(["generate", "--image", "a.png", "b.png", "c.png", "--prompt", "Same?", "--max_new_tokens", "4"],
            Normalize("generate", "--image", "a.png", "--prompt", "Same?", "--image", "b.png", "--max-new-tokens", "4", "--image", "c.png"));
        // A repeated scalar is left for the parser to refuse.
        Assert.Equal(["generate", "--prompt", "a", "--prompt", "b"], Normalize("generate", "--prompt", "a", "--prompt", "b"));
    }

    [Fact]
    public void Output_names_the_folder_where_a_verb_only_has_output_dir()
    {
        Assert.Equal(["stitch", "--output_dir", "out"], Normalize("stitch", "--output", "out"));
        Assert.Equal(["merge", "--output_dir=out"], Normalize("merge", "--output=out"));
        // generate's --output is its own flag (a JSON Lines file).
        Assert.Equal(["generate", "--output", "log.jsonl"], Normalize("generate", "--output", "log.jsonl"));
    }
}
